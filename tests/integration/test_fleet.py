"""The fleet: 3 API instances behind HAProxy, 3 stream workers in one group and the trainer,
on a real broker and Redis, under traffic. Sessions stay correct across instances, every
instance follows the trainer's versions, and after SIGKILL of one API instance and one
stream worker nothing the API answered 200 to is lost and the per-user state is a replay of
the topic. The API runs in the "acks" durability mode: that is what makes a 200 durable."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from botify.catalog import Catalog, generate_catalog
from botify.events import decode_listen_event
from botify.model_store import Announcement, AnnouncementFeed
from botify.settings import KafkaSettings, Settings
from botify_cli.load_balancer import INSTANCE_HEADER
from botify_cli.stack import EmbeddedStack
from tests.integration.live_model import one_model_env, served_version
from tests.integration.stream.harness import read_topic, wait_until_redis_matches_the_fold

pytestmark = [pytest.mark.slow]

MODEL = "affinity"
USERS = 400
STEPS = 6
# Every instance must serve a version this soon after its announcement.
FOLLOW_S = 10.0
# Traffic before the kills: until every instance serves a second version, at most this long.
WARM_S = 120.0
AFTER_KILL_S = 15.0
# Once the load balancer has seen the dead instance fail, every request must succeed.
ROUTED_AROUND_S = 5.0


@dataclass
class Traffic:
    """What clients sent and what the fleet answered."""

    # (user, message, track, time) of every request answered 200: the topic must have it.
    accepted: Counter[tuple[int, str, int, float]] = field(default_factory=Counter)
    # (monotonic time, status or exception name) of every request not answered 200.
    failures: list[tuple[float, str]] = field(default_factory=list)
    # Each session's served tracks, in order.
    sessions: list[list[int]] = field(default_factory=list)
    instances: Counter[str] = field(default_factory=Counter)
    switches: int = 0  # consecutive requests of one session served by different instances
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def send(
    client: httpx.Client, traffic: Traffic, user: int, message: str, track: int, listened: float
) -> httpx.Response | None:
    """One request, retried (bounded) until it is answered 200; None if it never is."""
    for _ in range(5):
        try:
            resp = client.post(f"/{message}/{user}", json={"track": track, "time": listened})
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        else:
            if resp.status_code == 200:
                with traffic.lock:
                    traffic.accepted[(user, message, track, listened)] += 1
                    traffic.requests += 1
                return resp
            outcome = str(resp.status_code)
        with traffic.lock:
            traffic.failures.append((time.monotonic(), outcome))
        time.sleep(0.2)
    return None


def drive(api: str, cat: Catalog, seed: int, stop: threading.Event, traffic: Traffic) -> None:
    """Sessions of STEPS /next then one /last, each request retried (bounded) on failure."""
    rng = random.Random(seed)
    ids = cat.ids.tolist()
    with httpx.Client(base_url=api, timeout=15) as client:
        while not stop.is_set():
            user = rng.randrange(seed * USERS, (seed + 1) * USERS)

            def liked(track: int, user: int = user) -> bool:
                return int(cat.artist_of(track).split()[-1]) % 10 == user % 10

            served: list[int] = []
            last_instance = None
            # A distinct time per request (jitter), so each accepted event is identifiable.
            track, listened = rng.choice(ids), 0.99
            for _ in range(STEPS):
                resp = send(
                    client, traffic, user, "next", track, round(listened - rng.random() * 1e-3, 6)
                )
                if resp is None:
                    break
                track = resp.json()["track"]
                served.append(track)
                instance = resp.headers[INSTANCE_HEADER]
                with traffic.lock:
                    traffic.instances[instance] += 1
                    traffic.switches += last_instance not in (None, instance)
                last_instance = instance
                listened = 0.95 if liked(track) else 0.05
            else:
                send(client, traffic, user, "last", track, round(listened - rng.random() * 1e-3, 6))
            with traffic.lock:
                traffic.sessions.append(served)


class VersionWatch:
    """When each announcement arrived, and when each instance first served each version."""

    def __init__(self, settings: Settings, instances: dict[str, str]) -> None:
        self.announced: dict[int, float] = {}
        self.served: dict[str, dict[int, float]] = {name: {} for name in instances}
        self._instances = dict(instances)
        self._stop = threading.Event()
        self._feed = AnnouncementFeed(settings.kafka, settings.models.announce_topic, self._on)
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def _on(self, announcement: Announcement) -> None:
        if announcement.model == MODEL:
            self.announced.setdefault(announcement.version, time.monotonic())

    def _poll(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(0.2):
                for name, url in list(self._instances.items()):
                    try:
                        text = client.get(f"{url}/metrics").text
                    except httpx.HTTPError:
                        continue  # killed
                    version = served_version(text, MODEL)
                    if version:
                        self.served[name].setdefault(version, time.monotonic())

    def version(self, name: str) -> int:
        return max(self.served[name], default=0)

    def first_serving(self, name: str, version: int) -> float | None:
        """When ``name`` first served ``version`` or a newer one."""
        times = [t for v, t in self.served[name].items() if v >= version]
        return min(times, default=None)

    def __enter__(self) -> VersionWatch:
        self._feed.start()
        self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._poller.join(5)
        self._feed.stop()


def test_the_fleet_keeps_sessions_versions_and_every_accepted_event_through_sigkills(
    tmp_path: Path,
) -> None:
    cat = generate_catalog(2000, 200, seed=1)
    env = one_model_env(
        tmp_path,
        cat,
        MODEL,
        BOTIFY_API__DURABILITY="acks",
        BOTIFY_TRAINER__EVERY_S="3",
        # Announcements must do the work: the pointer poll alone would take longer.
        BOTIFY_MODELS__POLL_S="30",
    )
    traffic, stop = Traffic(), threading.Event()
    stack = EmbeddedStack(
        Settings(),
        tmp_path / "logs",
        api_instances=3,
        stream_workers=3,
        trainer=True,
        extra_env=env,
    )
    with stack:
        endpoints = stack.endpoints
        assert endpoints is not None
        settings = Settings(kafka=KafkaSettings(bootstrap_servers=endpoints.broker))
        instances = dict(zip(stack.api_names(), endpoints.instances, strict=True))
        drivers = [
            threading.Thread(target=drive, args=(endpoints.api, cat, seed, stop, traffic))
            for seed in range(2)
        ]
        with VersionWatch(settings, instances) as watch:
            for d in drivers:
                d.start()
            try:
                deadline = time.monotonic() + WARM_S
                while time.monotonic() < deadline and not all(
                    watch.version(name) >= 2 for name in instances
                ):
                    assert not stack.dead(), stack.dead()
                    time.sleep(0.5)
                warm_versions = {name: watch.version(name) for name in instances}
                killed_at = time.monotonic()
                stack.kill_service("api-2")
                stack.kill_service("stream-2")
                time.sleep(AFTER_KILL_S)
            finally:
                stop.set()
                for d in drivers:
                    d.join(30)
            stopped_at = time.monotonic()
            # Announcements of the last seconds get their FOLLOW_S too.
            time.sleep(FOLLOW_S)
            watched_until = time.monotonic()
        dead = stack.dead()
        stats = httpx.get(f"{endpoints.load_balancer_stats}metrics", timeout=10).text

        records = read_topic(
            endpoints.broker,
            settings.kafka.listens_topic,
            sum(traffic.accepted.values()),
            timeout=60,
        )
        in_topic = Counter()
        for msg in records:
            e = decode_listen_event(msg.value())
            in_topic[(e.user, e.message, e.track, e.time)] += 1
        asyncio.run(
            wait_until_redis_matches_the_fold(
                redis.Redis.from_url(endpoints.redis),
                endpoints.broker,
                settings.kafka.listens_topic,
                len(records),
                timeout=60,
            )
        )

    logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
    print(
        f"fleet: {traffic.requests} requests answered 200, {len(traffic.failures)} failed "
        f"attempts, {len(traffic.sessions)} sessions, {traffic.switches} instance switches; "
        f"versions announced {sorted(watch.announced)}; records in the topic {len(records)}"
    )
    assert not dead, (dead, logs)
    assert traffic.requests > 500, traffic
    # Requests did spread: sessions moved between instances all the time.
    assert set(traffic.instances) == set(instances), traffic.instances
    pairs = sum(max(0, len(s) - 1) for s in traffic.sessions)
    assert traffic.switches > pairs / 4, (traffic.switches, pairs)
    # No session repeated a track, whichever instances served it.
    repeats = [s for s in traffic.sessions if len(set(s)) != len(s)]
    assert not repeats, repeats[:3]

    # Every instance served every version within FOLLOW_S of its announcement (the killed
    # one until its death).
    assert all(v >= 2 for v in warm_versions.values()), (warm_versions, logs.get("trainer.log"))
    late, lags = [], []
    for version, announced in sorted(watch.announced.items()):
        for name in instances:
            until = killed_at if name == "api-2" else watched_until
            if announced + FOLLOW_S > until:
                continue
            first = watch.first_serving(name, version)
            if first is not None:
                lags.append(first - announced)
            if first is None or first - announced > FOLLOW_S:
                late.append((name, version, None if first is None else first - announced))
    assert len(watch.announced) >= 2
    assert not late, late
    print(f"fleet: announcement → served on an instance, max {max(lags):.2f} s")

    # The load balancer took the killed instance out, and routed around it.
    assert 'haproxy_server_status{proxy="api",server="api-2",state="DOWN"} 1' in stats
    after = [f for f in traffic.failures if f[0] > killed_at + ROUTED_AROUND_S]
    assert not after, after
    assert stopped_at - killed_at >= AFTER_KILL_S

    # Zero accepted events lost: every 200 is in the topic (failed requests may be too).
    missing = traffic.accepted - in_topic
    assert not missing, (len(missing), list(missing.items())[:5])
