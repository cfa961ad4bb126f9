"""The ``botify`` command: the one entry point users learn. It sits outside the core package
because it wires everything together, the simulator included."""
