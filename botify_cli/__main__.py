from botify_cli.main import app

app(prog_name="botify")
