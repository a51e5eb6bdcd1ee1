"""include.airflow_standalone's REST client: error statuses become AirflowApiError with the status, so the
callers' status handling (503 "database is locked" retried by create_backfill, 404 = no XCom) takes effect.

A real HTTP server on a free loopback port answers with scripted statuses; no Airflow is needed for this layer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from include import airflow_standalone
from include.airflow_standalone import AdminLogin, AirflowApiError, AirflowRestClient


class ScriptedAirflow(ThreadingHTTPServer):
    """Answers /auth/token with a token, and every other call with the next scripted (status, body)."""

    def __init__(self, script: list[tuple[int, dict[str, object]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.calls: list[str] = []
        self.bodies: list[object] = []


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedAirflow

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = self.rfile.read(length)
        if self.path == "/auth/token":
            status, body = 201, {"access_token": "token"}
        else:
            self.server.calls.append(f"{self.command} {self.path.split('?')[0]}")
            self.server.bodies.append(json.loads(request) if request else None)
            status, body = self.server.script.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ScriptedAirflow] = []

    def start(script: list[tuple[int, dict[str, object]]]) -> tuple[ScriptedAirflow, AirflowRestClient]:
        server = ScriptedAirflow(script)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        return server, AirflowRestClient(base_url=url, login=AdminLogin("admin", "admin"))

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_error_status_is_an_api_error_with_the_status(serve: object) -> None:
    _server, client = serve([(409, {"detail": "conflict"})])  # type: ignore[operator]

    with pytest.raises(AirflowApiError) as raised:
        client.request("POST", "/api/v2/dags/x/dagRuns", json={})

    assert raised.value.status_code == 409
    assert "POST /api/v2/dags/x/dagRuns answered HTTP 409" in str(raised.value)


def test_backfill_creation_is_retried_while_sqlite_is_locked(
    serve: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_standalone.time, "sleep", lambda _seconds: None)
    locked = (503, {"detail": "database is locked"})
    server, client = serve([locked, locked, (200, {"id": 7, "dag_id": "d"})])  # type: ignore[operator]

    backfill = client.create_backfill("d", from_date="2026-01-01", to_date="2026-01-02")

    assert backfill["id"] == 7
    assert server.calls == ["POST /api/v2/backfills"] * 3


def test_a_missing_xcom_is_none_and_other_errors_raise(serve: object) -> None:
    _server, client = serve([(404, {"detail": "not found"}), (500, {"detail": "boom"})])  # type: ignore[operator]

    assert client.xcom("d", "run", "task") is None
    with pytest.raises(AirflowApiError):
        client.xcom("d", "run", "task")


def test_a_backfill_is_created_while_its_dag_is_paused(
    serve: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_standalone.time, "sleep", lambda _seconds: None)
    ok, locked = (200, {}), (503, {"detail": "database is locked"})
    server, client = serve([ok, locked, (200, {"id": 3, "dag_id": "d"}), ok])  # type: ignore[operator]

    backfill = client.backfill_while_paused("d", from_date="2026-01-01", to_date="2026-01-02")

    assert backfill["id"] == 3
    assert server.calls == [
        "PATCH /api/v2/dags/d",
        "POST /api/v2/backfills",
        "POST /api/v2/backfills",
        "PATCH /api/v2/dags/d",
    ]
    assert (server.bodies[0], server.bodies[-1]) == ({"is_paused": True}, {"is_paused": False})


def test_the_dag_is_unpaused_when_the_backfill_is_refused(serve: object) -> None:
    server, client = serve([(200, {}), (409, {"detail": "already running"}), (200, {})])  # type: ignore[operator]

    with pytest.raises(AirflowApiError):
        client.backfill_while_paused("d", from_date="2026-01-01", to_date="2026-01-02")

    assert server.calls[-1] == "PATCH /api/v2/dags/d"
    assert server.bodies[-1] == {"is_paused": False}


def test_a_backfill_whose_runs_all_ended_is_done_before_the_scheduler_marks_it(
    serve: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_standalone.time, "sleep", lambda _seconds: None)
    backfill = {"id": 5, "dag_id": "d", "from_date": "2026-01-01", "to_date": "2026-01-02"}
    running = (
        200,
        {"dag_runs": [{"dag_run_id": "a", "state": "success"}, {"dag_run_id": "b", "state": "running"}]},
    )
    unmarked = (200, {**backfill, "completed_at": None})
    ended = (
        200,
        {"dag_runs": [{"dag_run_id": "a", "state": "success"}, {"dag_run_id": "b", "state": "failed"}]},
    )
    server, client = serve([running, unmarked, ended])  # type: ignore[operator]

    runs = client.wait_for_backfill(backfill, timeout=60)

    assert [run["state"] for run in runs] == ["success", "failed"]
    assert server.calls == [
        "GET /api/v2/dags/d/dagRuns",
        "GET /api/v2/backfills/5",
        "GET /api/v2/dags/d/dagRuns",
    ]


def test_a_backfill_is_created_once_the_dags_previous_one_is_marked_complete(
    serve: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_standalone.time, "sleep", lambda _seconds: None)
    unmarked = (409, {"detail": "There is already a running backfill for dag d"})
    server, client = serve([unmarked, unmarked, (200, {"id": 8, "dag_id": "d"})])  # type: ignore[operator]

    assert client.create_backfill("d", from_date="2026-01-01", to_date="2026-01-02")["id"] == 8
    assert server.calls == ["POST /api/v2/backfills"] * 3
