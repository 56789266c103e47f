"""The ``rtbench`` command line: thin commands that parse, call one function and print.

Heavy imports stay inside the commands so that ``rtbench --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
) -> None:
    """Run a scenario and print the comparison; results go to OUT/<run-id>/."""
    from loadgen.errors import LoadgenError
    from loadgen.scenario import load_scenario
    from reports.summary import render_summary

    try:
        loaded = load_scenario(scenario, set_ or ())
    except LoadgenError as exc:
        raise _fail(str(exc)) from None
    from loadgen.engine import main_run

    try:
        run_dir = main_run(loaded, out, say=typer.echo)
    except KeyboardInterrupt:
        typer.echo("interrupted: what was measured is kept, summary marked partial", err=True)
        raise typer.Exit(130) from None
    except LoadgenError as exc:
        raise _fail(str(exc)) from None
    typer.echo(render_summary(run_dir))


@app.command()
def scenarios(
    directory: Annotated[Path, typer.Argument(help="Folder of scenarios.")] = SCENARIO_DIR,
) -> None:
    """List the scenarios with their one-line descriptions."""
    from loadgen.scenario import list_scenarios

    for name, description in list_scenarios(directory):
        typer.echo(f"{name:<28} {description}")


if __name__ == "__main__":
    app()
