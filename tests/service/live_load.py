"""Students against a real server (``qbank serve``, uvicorn workers) on loopback, with duplicate
and conflicting answers, and optionally kill -9 of every server process mid-load. Used by
tests/service/test_reliability.py (small) and benchmarks/bench_reliability.py (200 students).

Every answer the server acknowledged (200) is checked in the database afterwards: stored, at its
position, with the acknowledged option. A 503 or a dropped connection is retried (the server is
down or restarting); any other 5xx is counted and fails the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from service.core.security import create_token

ROOT = Path(__file__).resolve().parents[2]
TENANT = "00000000-0000-0000-0000-000000000001"
SECRET = "live-load-" + secrets.token_hex(24)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_bank(url: str) -> dict:
    """Migrate, load the demo bank; returns key and a wrong label per question id."""
    from sqlalchemy import select

    from service.db import make_engine, make_session_factory, migrate
    from service.demo import load_demo
    from service.models import Question

    migrate(url)
    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        load_demo(session, TENANT)
        refs = dict(session.execute(select(Question.id, Question.external_ref)).all())
    engine.dispose()
    bank = {i["item_id"]: i for i in json.loads((ROOT / "data" / "demo_bank.json").read_text())["items"]}
    labels = {}
    for qid, ref in refs.items():
        options = bank[ref]["options"]
        labels[qid] = (
            next(o["label"] for o in options if o["is_correct"]),
            next(o["label"] for o in options if not o["is_correct"]),
        )
    return labels


class Server:
    """``qbank serve`` in its own process group, so that kill -9 reaches the master and workers."""

    def __init__(self, url: str, workers: int, log: Path, **env):
        self.url, self.workers, self.log = url, workers, log
        self.port = free_port()
        self.env = {
            **os.environ,
            "QBANK_ENV": "production",
            "QBANK_SECRET_KEY": SECRET,
            "QBANK_DATABASE_URL": url,
            **{k: str(v) for k, v in env.items()},
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        command = [sys.executable, "-m", "qbank.cli.main", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--database-url", self.url]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not answer /health in time")

    def kill9(self) -> None:
        """SIGKILL to the server's process group (its master and workers), by the group's id."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


@dataclass
class Stats:
    acknowledged: dict = field(default_factory=dict)  # (quiz_id, position) -> option acknowledged
    finished: int = 0
    server_errors: list = field(default_factory=list)
    retries: int = 0
    conflicts: int = 0
    duplicates: int = 0
    answers: int = 0
    pair_ms: list = field(default_factory=list)
    killed_at: int | None = None


class ServerError(Exception):
    pass


async def _call(client, stats: Stats, method: str, path: str, **kw) -> httpx.Response:
    """A request retried while the server is unavailable (503, dropped connection)."""
    for _ in range(600):
        try:
            response = await client.request(method, path, **kw)
        except httpx.TransportError:
            stats.retries += 1
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 503:
            stats.retries += 1
            await asyncio.sleep(float(response.headers.get("retry-after", 1)) / 4)
            continue
        if response.status_code >= 500:
            stats.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            raise ServerError(stats.server_errors[-1])
        return response
    raise ServerError(f"{method} {path}: still unavailable after 600 tries")


async def _answer(client, stats, quiz, headers, item, selected) -> httpx.Response:
    body = {"question_id": item["question_id"], "selected": selected, "position": item["position"]}
    return await _call(client, stats, "POST", f"/v1/quizzes/{quiz}/answers", headers=headers, json=body)


async def student(port: int, name: str, labels: dict, length: int, rng: np.random.Generator, stats: Stats):
    headers = {
        "Authorization": "Bearer " + create_token(name, ["student"], TENANT, secret=SECRET, ttl_minutes=60)
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        r = await _call(
            client, stats, "POST", "/v1/quizzes", headers=headers, json={"filters": {"num_questions": length}}
        )
        assert r.status_code == 201, r.text
        quiz = r.json()["quiz_id"]
        while True:
            started = time.perf_counter()
            r = await _call(client, stats, "GET", f"/v1/quizzes/{quiz}/next", headers=headers)
            if r.status_code == 409:  # finished
                break
            assert r.status_code == 200, r.text
            item = r.json()
            key, wrong = labels[item["question_id"]]
            chosen = key if rng.random() < 0.6 else wrong
            draw = rng.random()
            if draw < 0.2:  # the same answer twice at once (a double click, a retry): both succeed
                stats.duplicates += 1
                responses = await asyncio.gather(
                    *(_answer(client, stats, quiz, headers, item, chosen) for _ in range(2))
                )
            elif draw < 0.35:  # two different answers at once: exactly one is taken
                stats.conflicts += 1
                other = wrong if chosen == key else key
                responses = await asyncio.gather(
                    _answer(client, stats, quiz, headers, item, chosen),
                    _answer(client, stats, quiz, headers, item, other),
                )
            else:
                responses = [await _answer(client, stats, quiz, headers, item, chosen)]
            taken = [r for r in responses if r.status_code == 200]
            assert taken and all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
            assert len({r.json()["selected"] for r in taken}) == 1, "two different answers acknowledged"
            stats.acknowledged[(quiz, item["position"])] = taken[0].json()["selected"]
            stats.answers += 1
            stats.pair_ms.append((time.perf_counter() - started) * 1000)
            if taken[0].json()["quiz_finished"]:
                stats.finished += 1
                break


async def run_students(
    port: int, n_students: int, length: int, labels: dict, seed: int, stats: Stats, during=None
):
    rng = np.random.default_rng(seed)
    tasks = [
        asyncio.create_task(student(port, f"student-{i}", labels, length, child, stats))
        for i, child in enumerate(rng.spawn(n_students))
    ]
    if during is not None:
        await during()
    await asyncio.gather(*tasks)


def lost_answers(url: str, stats: Stats) -> list:
    """Acknowledged answers missing from the database or stored with another option."""
    from sqlalchemy import select

    from service.db import make_engine, make_session_factory
    from service.models import UserResponse

    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        stored = {
            (q, p): label
            for q, p, label in session.execute(
                select(UserResponse.quiz_id, UserResponse.position, UserResponse.option_label)
            )
        }
    engine.dispose()
    return [
        (key, label, stored.get(key)) for key, label in stats.acknowledged.items() if stored.get(key) != label
    ]
