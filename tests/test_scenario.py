"""Scenario files: every mistake gives one line naming the file, the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadgen.errors import ScenarioError
from loadgen.scenario import list_scenarios, load_scenario

ROOT = Path(__file__).resolve().parent.parent

MISTAKES = [
    (
        "[run]\ntransports = ['ws', 'quic']\n",
        "run.transports = 'quic': must be one of ws, sse, sse-h2",
    ),
    ("[run]\ntransports = []\n", "run.transports = []"),
    ("[run]\nsteps = [5000, 1000]\n", "run.steps = [5000, 1000]: must be strictly increasing"),
    ("[run]\nsteps = [0]\n", "run.steps = 0: must be an integer from 1 to 100000"),
    ("[run]\nhold_s = 'long'\n", "run.hold_s = 'long': must be a number from 1 to 86400"),
    ("[run]\nramp_rate = -5\n", "run.ramp_rate = -5: must be a number"),
    ("[run]\nconnect_concurrency = 0\n", "run.connect_concurrency = 0: must be an integer from 1"),
    ("[run]\ncolour = 'red'\n", "run.colour = 'red': unknown field; known:"),
    ("[workload]\nkind = 'storm'\n", "workload.kind = 'storm': must be one of idle, echo, fanout"),
    ("[workload]\npayload_bytes = 1.5\n", "workload.payload_bytes = 1.5: must be an integer"),
    ("[workload]\nrate = 0\n", "workload.rate = 0: must be a number from 0.01 to 1000"),
    (
        "[target]\nurl = 'http://10.0.0.1:8080'\nlaunch = false\n",
        "target.url = 'http://10.0.0.1:8080': only loopback hosts",
    ),
    ("[target]\nlaunch = false\n", "target.url = None: is required when target.launch = false"),
    (
        "[target]\nprocesses = 2\nbroker = 'memory'\n",
        "target.broker = 'memory': several processes need",
    ),
    ("[target]\nlaunch = 'yes'\n", "target.launch = 'yes': must be true or false"),
    ("name = 'x'\nfoo = 1\n", "foo = 1: unknown field"),
    ("[run\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES)
def test_each_mistake_is_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    """A wrong scenario is refused with one line: file, field, value, what is allowed."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(path)
    line = str(refused.value)
    assert "\n" not in line.strip()
    assert line.startswith(str(path))
    assert message in line


def test_overrides_apply_and_are_checked(tmp_path: Path) -> None:
    """--set SECTION.FIELD=VALUE overrides a field and goes through the same checks."""
    path = ROOT / "scenarios" / "quickstart.toml"
    scenario = load_scenario(path, ["run.hold_s=3", "run.transports=['ws']"])
    assert scenario.run.hold_s == 3 and scenario.run.transports == ("ws",)
    with pytest.raises(ScenarioError, match=r"run\.hold_s = 0"):
        load_scenario(path, ["run.hold_s=0"])
    with pytest.raises(ScenarioError, match=r"SECTION\.FIELD=VALUE"):
        load_scenario(path, ["hold_s=3"])


def test_shipped_scenarios_load() -> None:
    """Every scenario in scenarios/ is valid and described."""
    listed = list_scenarios(ROOT / "scenarios")
    assert listed
    for name, description in listed:
        assert description, name
        load_scenario(ROOT / "scenarios" / name)


def _scenario(tmp_path: Path, body: str) -> object:
    path = tmp_path / "plan.toml"
    path.write_text('name = "plan"\n' + body)
    return load_scenario(path)


def test_preflight_refuses_more_sockets_than_a_worker_may_open(tmp_path: Path) -> None:
    import resource

    from loadgen.engine import preflight
    from loadgen.errors import PlanError
    from loadgen.scenario import Scenario

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 90_000:
        pytest.skip("this host allows more open files than the scenario needs")
    scenario = _scenario(tmp_path, "[run]\nsteps = [100000]\nworkers = 1\n")
    assert isinstance(scenario, Scenario)
    with pytest.raises(PlanError) as caught:
        preflight(scenario)
    message = str(caught.value)
    assert "connections per generator process because its open-file limit is" in message
    assert "set run.workers to" in message


def test_preflight_refuses_more_connections_than_a_server_process_may_hold(
    tmp_path: Path,
) -> None:
    import resource

    from loadgen.engine import preflight
    from loadgen.errors import PlanError
    from loadgen.scenario import Scenario

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 90_000:
        pytest.skip("this host allows more open files than the scenario needs")
    scenario = _scenario(tmp_path, "[run]\nsteps = [100000]\nworkers = 10\n")
    assert isinstance(scenario, Scenario)
    with pytest.raises(PlanError) as caught:
        preflight(scenario)
    assert "each server process would hold 100000 connections" in str(caught.value)
    assert "set target.processes to" in str(caught.value)
