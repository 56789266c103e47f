"""The ``rtbench`` command line: thin commands that parse, call one function and print.

Heavy imports stay inside the commands so that ``rtbench --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Measure whether real-time traffic should go over WebSocket or Server-Sent Events.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """rtbench: serve, run, probe, report, compare, plan."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
def serve(
    *,
    transport: Annotated[
        list[str] | None,
        typer.Option("--transport", "-t", help="ws, sse, sse-h2; repeat for several."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for REST, WebSocket and SSE/1.1.")] = 8080,
    h2_port: Annotated[
        int | None, typer.Option(help="Port for SSE over HTTP/2 with TLS [default: port+1].")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help="memory or redis://HOST:PORT/DB [default: memory for one process, "
            "an embedded Valkey for several]."
        ),
    ] = None,
    processes: Annotated[int, typer.Option(help="Server processes sharing the ports.")] = 1,
    realm: Annotated[
        Path | None, typer.Option(help="Realm TOML file (DAOs, users, rooms).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated realm.")] = 0,
    users: Annotated[int, typer.Option(help="Users in the generated realm.")] = 100_000,
    admin_key: Annotated[
        str | None, typer.Option(help="Key for POST /v1/admin/balances [default: realm secret].")
    ] = None,
    gate_delay_ms: Annotated[
        float, typer.Option(help="Simulated latency of the token-gating lookup.")
    ] = 0.0,
    heartbeat_s: Annotated[float, typer.Option(help="Presence heartbeat interval.")] = 60.0,
    presence_expiry_s: Annotated[float, typer.Option(help="Presence expiry.")] = 90.0,
    max_message_bytes: Annotated[int, typer.Option(help="Largest client frame.")] = 65536,
    send_queue_limit: Annotated[int, typer.Option(help="Frames queued per client.")] = 1024,
    origin: Annotated[
        list[str] | None, typer.Option("--origin", help="Allowed Origin; repeat. Default: any.")
    ] = None,
    gc_freeze_s: Annotated[
        float,
        typer.Option(
            help="Every this many seconds, freeze surviving objects out of the garbage "
            "collector's walk (0: Python's default collector)."
        ),
    ] = 5.0,
    ready_file: Annotated[
        Path | None, typer.Option(help="Write URLs and PIDs as JSON here once ready.")
    ] = None,
) -> None:
    """Run the reference WebSocket and SSE servers until Ctrl-C."""
    from servers.config import Limits, ServerConfig
    from servers.runner import ServeError, ServeOptions
    from servers.runner import serve as run
    from servers.session import Transport

    names = transport or ["ws", "sse", "sse-h2"]
    try:
        chosen = tuple(Transport(name) for name in names)
    except ValueError:
        raise _fail(f"--transport {names}: each must be one of ws, sse, sse-h2") from None
    if realm is not None and not realm.exists():
        raise _fail(f"realm file {realm} does not exist")
    config = ServerConfig(
        realm_file=str(realm) if realm else None,
        seed=seed,
        users=users,
        admin_key=admin_key,
        gate_delay_s=gate_delay_ms / 1000,
        heartbeat_s=heartbeat_s,
        presence_expiry_s=presence_expiry_s,
        allowed_origins=tuple(origin or ()),
        gc_freeze_s=gc_freeze_s,
        limits=Limits(max_message_bytes=max_message_bytes, send_queue_limit=send_queue_limit),
    )
    options = ServeOptions(
        transports=chosen,
        host=host,
        port=port,
        h2_port=h2_port,
        processes=processes,
        broker=broker,
        ready_file=str(ready_file) if ready_file else None,
        config=config,
    )
    try:
        run(options, say=typer.echo)
    except ServeError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from None


SCENARIO_DIR = Path("scenarios")


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    *,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field: SECTION.FIELD=VALUE (repeat)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.")] = Path("results"),
    write_report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the HTML/Markdown report.")
    ] = True,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per second instead of the live table.")
    ] = False,
) -> None:
    """Run a scenario, print the comparison and write the report to OUT/<run-id>/."""
    from loadgen.errors import LoadgenError
    from loadgen.scenario import load_scenario
    from reports.summary import render_summary

    try:
        loaded = load_scenario(scenario, set_ or ())
    except LoadgenError as exc:
        raise _fail(str(exc)) from None
    import contextlib
    import sys

    from loadgen.engine import main_run
    from loadgen.live import LiveView

    live = LiveView() if sys.stdout.isatty() and not plain else None
    try:
        with live or contextlib.nullcontext():
            run_dir = main_run(
                loaded,
                out,
                say=live.say if live else typer.echo,
                view=live.update if live else None,
            )
    except KeyboardInterrupt:
        typer.echo("interrupted: what was measured is kept, summary marked partial", err=True)
        raise typer.Exit(130) from None
    except LoadgenError as exc:
        raise _fail(str(exc)) from None
    typer.echo(render_summary(run_dir))
    if write_report:
        from reports.render import report as render_report
        from reports.results import load_run

        render_report([load_run(run_dir)], run_dir / "report")
        typer.echo(f"\nreport: {run_dir / 'report' / 'report.html'} (and report.md)")


@app.command()
def scenarios(
    directory: Annotated[Path, typer.Argument(help="Folder of scenarios.")] = SCENARIO_DIR,
) -> None:
    """List the scenarios with their one-line descriptions."""
    from loadgen.scenario import list_scenarios

    for name, description in list_scenarios(directory):
        typer.echo(f"{name:<28} {description}")


@app.command()
def probe(
    *,
    pid: Annotated[
        list[int] | None, typer.Option("--pid", help="PID to sample; repeat for several.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Sample every process whose name or command contains this.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between samples.", min=0.1)] = 1.0,
    count: Annotated[int, typer.Option(help="Samples to take (0: until Ctrl-C).", min=0)] = 10,
) -> None:
    """Sample a server rtbench did not start: RSS, USS, CPU, files, kernel socket memory."""
    import time

    from loadgen.probe import Probe, find_processes

    if bool(pid) == bool(name):
        raise _fail("give --pid N (repeatable) or --name NAME")
    spec = ",".join(map(str, pid)) if pid else str(name)
    try:
        pids = find_processes(spec)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    sampler = Probe(pids)
    typer.echo(f"sampling PIDs {', '.join(map(str, pids))} every {interval:g} s")
    typer.echo(
        f"{'t_s':>6} {'rss_MiB':>9} {'uss_MiB':>9} {'cpu_%':>7} {'fds':>7} {'kernel_MiB':>11}"
    )
    started = time.monotonic()
    last = sampler.sample()
    last_t = started
    taken = 0
    try:
        while count == 0 or taken < count:
            time.sleep(interval)
            sample, now = sampler.sample(), time.monotonic()
            cpu = (sample.cpu_s - last.cpu_s) / (now - last_t) * 100
            uss = f"{sample.uss / 2**20:9.1f}" if sample.uss is not None else f"{'n/a':>9}"
            kernel = (
                f"{sample.kernel / 2**20:11.1f}" if sample.kernel is not None else f"{'n/a':>11}"
            )
            typer.echo(
                f"{now - started:6.1f} {sample.rss / 2**20:9.1f} {uss} {cpu:7.1f} "
                f"{sample.open_files:7d} {kernel}"
            )
            last, last_t, taken = sample, now, taken + 1
    except KeyboardInterrupt:
        pass


def _load_runs(paths: list[Path]) -> list[Any]:
    from reports.results import ReportError, load_run

    try:
        return [load_run(path) for path in paths]
    except ReportError as exc:
        raise _fail(str(exc)) from None


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="One or more results/<run-id> folders.")],
    *,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the report [default: <first run>/report]."),
    ] = None,
) -> None:
    """Write an HTML page (self-contained), a Markdown twin and PNG charts from results."""
    from reports.render import report as write_report

    loaded = _load_runs(runs)
    target = out or runs[0] / "report"
    written = write_report(loaded, target)
    for path in written:
        typer.echo(str(path))
    typer.echo(f"open {target / 'report.html'} in a browser; it needs no network")


@app.command()
def compare(
    base: Annotated[Path, typer.Argument(help="The base run's results folder.")],
    new: Annotated[Path, typer.Argument(help="The new run's results folder.")],
    *,
    fail_on: Annotated[
        str,
        typer.Option(
            help='Thresholds, e.g. "p99>+10%,ram_per_conn>+5%,msgs_per_s<-5%"; '
            "exit 1 when one is crossed outside the noise band."
        ),
    ] = "",
) -> None:
    """Table of changes from BASE to NEW; a non-zero exit when a threshold is crossed."""
    from reports import compare as cmp
    from reports.results import ReportError

    try:
        thresholds = cmp.parse_thresholds(fail_on)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    base_run, new_run = _load_runs([base, new])
    deltas = cmp.compare(base_run, new_run, thresholds)
    if not deltas:
        raise _fail(f"{base} and {new} share no transport: nothing to compare")
    typer.echo(f"base {base_run.name}  ->  new {new_run.name}\n")
    typer.echo(cmp.render_text(cmp.table(deltas)))
    for line in cmp.missing(base_run, new_run):
        typer.echo(f"note: {line}")
    failed = [d for d in deltas if d.crossed]
    if failed:
        typer.echo(f"\n{len(failed)} threshold(s) crossed:")
        typer.echo(cmp.render_text(cmp.table(failed)))
        raise typer.Exit(1)
    if thresholds:
        typer.echo(f"\nwithin every threshold ({', '.join(map(str, thresholds))})")


_SIZE = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def _parse_size(text: str) -> int:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match[2].lower() not in _SIZE:
        raise _fail(f"--host-ram {text!r}: write a size such as 16GiB, 64GB or 512MiB")
    return int(float(match[1]) * _SIZE[match[2].lower()])


def _parse_ms(text: str) -> float:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", text)
    if not match:
        raise _fail(f"--p99 {text!r}: write a duration such as 50ms or 0.2s")
    return float(match[1]) * (1000 if match[2] == "s" else 1)


@app.command()
def plan(
    runs: Annotated[list[Path], typer.Argument(help="Results folders to build the models from.")],
    *,
    connections: Annotated[int, typer.Option(help="Connections to serve.", min=1)],
    msg_rate: Annotated[
        float | None,
        typer.Option(
            help="Messages delivered per second in total [default: as measured per connection × N]."
        ),
    ] = None,
    p99: Annotated[str, typer.Option(help="Latency objective for p99.")] = "50ms",
    host_ram: Annotated[str, typer.Option(help="RAM of one server host.")] = "16GiB",
    host_cores: Annotated[int, typer.Option(help="Cores of one server host.", min=1)] = 4,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for plan.md and plan.html [default: <first run>/report]."),
    ] = None,
) -> None:
    """Server hosts and RAM per transport for N connections within a p99 objective."""
    from reports import plan as planner
    from reports import render
    from reports.compare import render_text

    request = planner.Request(
        connections=connections,
        msg_rate=msg_rate,
        p99_ms=_parse_ms(p99),
        host_ram=_parse_size(host_ram),
        host_cores=host_cores,
    )
    loaded = _load_runs(runs)
    names = list(dict.fromkeys(t for run in loaded for t in run.transports))
    models = [m for m in (planner.model_of(t, loaded) for t in names) if m is not None]
    if not models:
        raise _fail("no run holds a transport with measured steps and a memory fit")
    plans = [planner.plan(m, request) for m in models]
    table = planner.plan_table(plans, request)
    notes = [f"{p.transport}: {note}" for p in plans for note in p.notes]
    typer.echo(table.title + "\n")
    typer.echo(render_text(table))
    typer.echo("")
    for p in plans:
        if p.extrapolation > 1:
            typer.echo(f"{p.transport}: {planner.extrapolation_text(p.extrapolation)}")
    typer.echo("\nWhy:")
    for line in notes + planner.assumptions(models, request):
        typer.echo(f"- {line}")
    doc = render.Document(
        title="rtbench capacity plan",
        intro=[f"From runs: {', '.join(r.name for r in loaded)}."],
        warnings=[
            f"{p.transport}: {planner.extrapolation_text(p.extrapolation)}"
            for p in plans
            if p.extrapolation > 1
        ],
        tables=[table],
        charts=[],
    )
    doc.intro += [f"- {line}" for line in notes + planner.assumptions(models, request)]
    written = render.write(doc, out or runs[0] / "report", stem="plan")
    typer.echo("\n" + "\n".join(str(p) for p in written))


if __name__ == "__main__":
    app()
