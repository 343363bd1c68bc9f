"""The ``execscope`` command line (click). JSON output is one document on stdout; diagnostics go to
stderr; failures exit non-zero."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from execscope import __version__
from execscope.instrumentation.export.kafka_security import (
    KafkaSecurity,
    KafkaSettingsError,
    env_name,
    flag_name,
)
from execscope.output import print_rows
from execscope.storage.store import DEFAULT_STORE, ENV_STORE, Store, StoreError, open_store

LEVEL_CHOICE = click.Choice(["functions", "branches", "statements"])
# Per trace and function, calls recorded before adaptive sampling starts: every call of ordinary
# programs and tests, a bounded share of hot loops (which a 2-core machine cannot store at full rate).
DEFAULT_ADAPTIVE = 1000
FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Rows as an aligned table or one JSON array.")
STORE_OPTION = click.option("--store", "store_dsn", envvar=ENV_STORE, default=None, metavar="DSN",
                            help=f"chdb:///path (embedded, default {DEFAULT_STORE}) or "
                                 "http(s)://user:pass@host:8123/db. Env: EXECSCOPE_STORE.")

PROCESSORS_OPTION = click.option(
    "--processors", "processors_file", default=None, metavar="FILE", type=click.Path(dir_okay=False),
    help="Processor chain configuration (TOML or JSON): enrich, redact, attribute_limits, plugins of the "
         "entry point group execscope.processors, [batch] sizes, and [kafka] SASL/TLS settings (as the --kafka-* "
         "flags, with _ for -, and sasl_password).")


KAFKA_SECURITY_FLAGS = {  # setting -> (metavar, help); passwords only from the environment or a file
    "security_protocol": ("PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: SASL_SSL with a SASL "
                                      "mechanism, SSL with a TLS file, else PLAINTEXT)."),
    "sasl_mechanism": ("MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    "sasl_username": ("USER", "SASL user name."),
    "sasl_password_file": ("FILE", f"File holding the SASL password (or give the password in "
                                   f"{env_name('sasl_password')})."),
    "ssl_ca_location": ("PEM", "CA certificates to trust (default: the system's)."),
    "ssl_certificate_location": ("PEM", "Client certificate (brokers that ask for one)."),
    "ssl_key_location": ("PEM", f"Client private key (its password in {env_name('ssl_key_password')})."),
    "ssl_endpoint_identification_algorithm": ("https|none", "https (default): the broker's certificate must name "
                                                            "its host; none: not checked."),
}


def kafka_security_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--kafka-*`` SASL/TLS flags, handed to ``command`` as one ``kafka_flags`` dict (setting ->
    value or None); each also reads its environment variable (see kafka_security)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(f"kafka_{name}") for name in KAFKA_SECURITY_FLAGS}
        return command(*args, kafka_flags=flags, **kwargs)

    for name, (metavar, text) in reversed(KAFKA_SECURITY_FLAGS.items()):
        wrapper = click.option(flag_name(name), f"kafka_{name}", default=None, metavar=metavar,
                               help=f"{text} Env: {env_name(name)}.")(wrapper)
    return wrapper


def _kafka_security(flags: dict[str, str | None], processors_file: str | None) -> KafkaSecurity:
    """Flags, then environment, then the processors file's [kafka] table; a bad one is a usage error."""
    from execscope.collector.processors import ConfigError, load_config

    try:
        table = load_config(processors_file).get("kafka") if processors_file else None
        if table is not None and not isinstance(table, dict):
            raise KafkaSettingsError(f"{processors_file}: [kafka] must be a table")
        return KafkaSecurity.resolve(flags, file=table, file_name=str(processors_file))
    except (ConfigError, KafkaSettingsError) as exc:
        raise click.UsageError(str(exc)) from None


def _open(store_dsn: str | None) -> Store:
    try:
        return open_store(store_dsn)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _chain(processors_file: str | None, store: Store, default_redact: bool = False) -> Any:
    from execscope.collector.processors import ConfigError, build_chain, load_config

    try:
        return build_chain(load_config(processors_file), store, default_redact=default_redact)
    except ConfigError as exc:
        store.close()
        raise click.ClickException(str(exc)) from None


def _name_values(items: tuple[str, ...]) -> dict[str, str]:
    """``--param NAME=VALUE`` options as a dict; a malformed one is a usage error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        out[key] = value
    return out


_CONSOLE = False
"""True when this process is the ``execscope`` command itself (:func:`console_main`), not a caller
running :func:`main` in-process (click's test runner, an embedding program)."""


def console_main() -> None:
    """The console script and ``python -m execscope``: :func:`main` in a process of its own."""
    global _CONSOLE
    _CONSOLE = True
    main()


def _exit_now(code: int) -> NoReturn:
    """End the command with ``code``, everything it owns already released (store closed, locks
    and spool lock given back). In the console command, stdout and stderr are flushed and the
    process ends without the interpreter's teardown: unloading the embedded engine and its threads
    alone takes ~40 ms (more on a busy machine) that every `execscope run` paid after the program
    had ended. In-process, the usual ``SystemExit``."""
    if _CONSOLE:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more can be said
                pass
        os._exit(code)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="execscope")
def main() -> None:
    """Time-travel debugging and deep observability for Python, as OpenTelemetry plugins.

    Record a program with `execscope run`, list what was recorded with `execscope traces`, and ask
    anything with `execscope sql`. `execscope demo` shows the whole loop on a bundled example.
    """


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--include", "-i", multiple=True, metavar="GLOB",
              help="Module names to record (fnmatch globs, e.g. 'myapp' 'myapp.*'). Repeatable; required.")
@click.option("--exclude", "-x", multiple=True, metavar="GLOB", help="Module names never to record.")
@click.option("--level", type=LEVEL_CHOICE, default="functions", show_default=True,
              help="functions: calls, arguments, returns, exceptions. branches: + which arm of every "
                   "if/loop/try/match/and/or ran. statements: + every statement and every value assigned.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A plan file (TOML, as `execscope plan` writes): per function a level (off, functions, branches, "
                   "statements) and a fraction of calls to record, in place of --level; its include/exclude globs "
                   "add to --include/--exclude. With a plan, --adaptive defaults to 0 (the plan's rates decide).")
@STORE_OPTION
@click.option("--service", default="", help="service.name of the recorded spans (default: the command name).")
@click.option("--sample", "sample_ratio", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              envvar="EXECSCOPE_SAMPLE",
              help="Head sampling: record this fraction of traces (decided per trace id; a trace continuing an "
                   "OpenTelemetry parent follows the parent's decision). Left-out calls cost almost nothing. "
                   "Env: EXECSCOPE_SAMPLE.")
@click.option("--max-events-per-s", "max_events_per_s", type=click.IntRange(min=0), default=0, show_default=True,
              help="Budget of statement/branch/assignment events per second and process (0: none); beyond it "
                   "events are dropped and counted on their span. Calls are always kept.")
@click.option("--adaptive", "adaptive_budget", type=click.IntRange(min=0), default=DEFAULT_ADAPTIVE,
              show_default=True, envvar="EXECSCOPE_ADAPTIVE",
              help="Per-node adaptive sampling: in each trace (a test, a request) each function's first N calls "
                   "are recorded, then one in 2, 4, ... (each branch/statement event a recorded call records "
                   "counts as one more call; calls left out are counted exactly, on their recorded "
                   "caller or on an `execscope.unrecorded` span). 0: record every call. Env: EXECSCOPE_ADAPTIVE.")
@click.option("--max-spool-mb", "max_spool_mb", type=click.FloatRange(min=0), default=1024, show_default=True,
              envvar="EXECSCOPE_MAX_SPOOL_MB",
              help="When the program records faster than it can be stored, at most this much waits in the spool; "
                   "further batches are dropped and counted (0: no limit). Env: EXECSCOPE_MAX_SPOOL_MB.")
@click.option("--exporter", type=click.Choice(["spool", "kafka"]), default="spool", show_default=True,
              help="spool: this process writes the store while the program runs. kafka: every process sends "
                   "OTLP to --kafka (store it with `execscope collect`).")
@click.option("--kafka", "kafka_bootstrap", default="", metavar="HOST:PORT", envvar="EXECSCOPE_KAFKA",
              help="Kafka bootstrap servers (with --exporter kafka). Env: EXECSCOPE_KAFKA.")
@click.option("--topic", default="otlp_spans", show_default=True, help="Kafka topic (with --exporter kafka).")
@kafka_security_options
@PROCESSORS_OPTION
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(include: tuple[str, ...], exclude: tuple[str, ...], level: str, plan_file: str | None,
        store_dsn: str | None, service: str,
        sample_ratio: float, max_events_per_s: int, adaptive_budget: int, max_spool_mb: float, exporter: str,
        kafka_bootstrap: str, topic: str, kafka_flags: dict[str, str | None], processors_file: str | None,
        command: tuple[str, ...]) -> None:
    """Run COMMAND with the modules matching --include recorded into the store.

    COMMAND is any Python invocation, after `--`:

    \b
        execscope run --include 'myapp.*' -- python -m myapp
        execscope run --include 'mylib' --include 'mylib.*' -- python -m pytest tests/
        execscope run --include app -- python app.py
        execscope run --include 'myapp.*' --level statements -- myapp-console-script --flag

    Every Python process the command starts (subprocesses, multiprocessing, pytest-xdist workers)
    records too. This process owns the embedded store while the command runs and exits with the
    command's exit code.
    """
    from execscope.recording import (
        RunOptions,
        describe,
        exit_code_of,
        resolve_python,
        run_counts,
        run_recorded,
        run_to_kafka,
        script_command,
        spool_path_for,
    )

    plan_path = ""
    if plan_file:  # a bad plan is said before the program runs
        from execscope.instrumentation.rewrite.plan import PlanError, load_plan

        try:
            plan = load_plan(plan_file)
        except PlanError as exc:
            raise click.ClickException(str(exc)) from None
        plan_path = os.path.abspath(plan_file)
        include = (*include, *(g for g in plan.include if g not in include))
        exclude = (*exclude, *(g for g in plan.exclude if g not in exclude))
        if click.get_current_context().get_parameter_source("adaptive_budget") is click.core.ParameterSource.DEFAULT:
            adaptive_budget = 0
    if not include:
        raise click.UsageError("give at least one --include GLOB naming the modules to record, "
                               "e.g. --include 'myapp' --include 'myapp.*'")
    if processors_file:  # its redact entry extends the secrets policy of capture too
        from execscope.instrumentation.capture.redaction import ENV_CONFIG

        os.environ[ENV_CONFIG] = os.path.abspath(processors_file)
    if exporter == "kafka":
        if not kafka_bootstrap:
            raise click.UsageError("--exporter kafka needs --kafka HOST:PORT")
        security = _kafka_security(kafka_flags, processors_file)  # bad settings: said before the program runs
        options = RunOptions(include=include, exclude=exclude, level=level, service=service,
                             exporter="kafka", kafka=kafka_bootstrap, topic=topic, sample=sample_ratio,
                             max_events_per_s=max_events_per_s, adaptive=adaptive_budget,
                             kafka_security=security, plan=plan_path)
        try:
            returncode, refusals = run_to_kafka(script_command(resolve_python(command), include), options)
        except FileNotFoundError:
            raise click.ClickException(f"command not found: {command[0]}") from None
        if not refusals:  # else each refused process said why, and nothing of it was sent
            click.echo(f"execscope: spans sent to Kafka {kafka_bootstrap} topic {topic}; store them with "
                       f"`execscope collect --kafka {kafka_bootstrap} --topic {topic}`", err=True)
        sys.exit(exit_code_of(returncode))
    from execscope.collector.processors import ConfigError, build_chain, load_config
    from execscope.storage.store import lock_store, require_embedded_engine, resolve_address

    try:
        config = load_config(processors_file)
        address = resolve_address(store_dsn)
        if address.kind == "chdb":
            require_embedded_engine()  # no chDB for this Python: said before the program starts
        lock_fd = lock_store(store_dsn)  # a locked store is refused before the program starts
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    opened: list[Store] = []
    lock_held = [lock_fd is not None]  # until open_store owns it (and closes it, failing or not)

    def open_while_running() -> Store:  # the engine loads while the program starts
        lock_held[0] = False
        opened.append(open_store(store_dsn, lock_fd=lock_fd))
        return opened[0]

    options = RunOptions(include=include, exclude=exclude, level=level, service=service, sample=sample_ratio,
                         max_events_per_s=max_events_per_s, adaptive=adaptive_budget,
                         max_spool_mb=max_spool_mb, plan=plan_path)
    try:
        returncode, report = run_recorded(script_command(resolve_python(command), include), options,
                                          open_while_running, lambda store: build_chain(config, store), address)
        click.echo(describe(report, opened[0], *run_counts(opened[0], report)), err=True)
    except FileNotFoundError:
        raise click.ClickException(f"command not found: {command[0]}") from None
    except (ConfigError, StoreError) as exc:
        waiting = getattr(exc, "spool_path", None) or spool_path_for(address)
        raise click.ClickException(f"{exc} (the recording stays in {waiting} for the next run)") from None
    finally:
        if opened:
            opened[0].close()
        elif lock_held[0] and lock_fd is not None:
            os.close(lock_fd)
    _exit_now(exit_code_of(returncode))


@main.command()
@click.option("--kafka", "kafka_bootstrap", required=True, metavar="HOST:PORT", envvar="EXECSCOPE_KAFKA",
              help="Kafka bootstrap servers. Env: EXECSCOPE_KAFKA.")
@click.option("--topic", default="otlp_spans", show_default=True,
              help="Topic of OTLP protobuf messages (node rows are read from TOPIC.cpg, poison goes to TOPIC.dlq).")
@click.option("--group", default="execscope-collector", show_default=True, help="Consumer group.")
@click.option("--instance-id", default=None, help="Static group membership id: a collector restarted with the "
              "same id gets its partitions back at once instead of after the session timeout.")
@kafka_security_options
@STORE_OPTION
@PROCESSORS_OPTION
@click.option("--exit-when-idle", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Exit once every partition is read to its end and stored, and nothing arrived for SECONDS.")
@click.option("--stats", "show_stats", is_flag=True,
              help="Print pipeline stats (lag, rows/s, batch sizes, errors, dead letters) every 5 s on stderr "
                   "and as one JSON document on stdout at the end.")
def collect(kafka_bootstrap: str, topic: str, group: str, instance_id: str | None,
            kafka_flags: dict[str, str | None], store_dsn: str | None, processors_file: str | None,
            exit_when_idle: float | None, show_stats: bool) -> None:
    """Consume OTLP spans from Kafka into the store, until stopped (Ctrl-C / SIGTERM) or idle.

    Offsets are committed only after the rows are stored; a replayed batch is deduplicated, so a
    crash anywhere neither loses nor duplicates spans.

    \b
        execscope collect --kafka 127.0.0.1:9092 --exit-when-idle 5 --stats
        EXECSCOPE_KAFKA_SASL_PASSWORD=... execscope collect --kafka broker:9093 \\
            --kafka-sasl-mechanism SCRAM-SHA-512 --kafka-sasl-username alice --kafka-ssl-ca-location ca.pem
    """
    import json
    import signal

    from execscope.collector.kafka_source import KafkaSource
    from execscope.instrumentation.export.kafka_security import KafkaAccessError, KafkaConnectError

    security = _kafka_security(kafka_flags, processors_file)

    if os.environ.get("EXECSCOPE_COLLECT_LOG"):  # the Kafka client's own log, for diagnosing a deployment
        import logging

        logging.basicConfig(filename=os.environ["EXECSCOPE_COLLECT_LOG"], level=logging.DEBUG,
                            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    store = _open(store_dsn)
    try:
        chain = _chain(processors_file, store, default_redact=True)  # spans of other SDKs are redacted too
        source = KafkaSource(kafka_bootstrap, store, topic=topic, group=group, chain=chain,
                             instance_id=instance_id, security=security)
        previous = {sig: signal.signal(sig, lambda *_: source.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}

        def tick(stats: object) -> None:
            if show_stats:
                click.echo(json.dumps(source.stats.as_dict(), sort_keys=True), err=True)

        try:
            stats = source.run(exit_when_idle=exit_when_idle, on_tick=tick)
        except (KafkaAccessError, KafkaConnectError) as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"collector failed: {type(exc).__name__}: {exc}") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        store.close()
    click.echo(f"execscope: stored {stats.spans} spans ({stats.batches} batches, {stats.nodes} nodes) from "
               f"{kafka_bootstrap} topic {topic}; {stats.dead_letters} poison messages sent to {topic}.dlq; "
               f"{stats.store_errors} store errors retried", err=True)
    if stats.cpg_errors:
        click.echo(f"execscope: {stats.cpg_errors} node-row carrier spans could not be read (last: "
                   f"{stats.last_cpg_error}); spans of those module versions do not join cpg_nodes", err=True)
    if show_stats:
        click.echo(json.dumps(stats.as_dict(), sort_keys=True))


@main.command()
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="How many traces.")
@FORMAT_OPTION
@STORE_OPTION
def traces(limit: int, fmt: str, store_dsn: str | None) -> None:
    """List recorded traces, newest first: trace_id, root span, spans, errors, start, duration_ms."""
    from execscope.queries.traces import list_traces

    store = _open(store_dsn)
    try:
        result = list_traces(store, limit)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    print_rows(result.column_names, result.rows, fmt)


@main.command()
@click.argument("query")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind {NAME:Type} placeholders in QUERY server-side. Repeatable.")
@FORMAT_OPTION
@STORE_OPTION
def sql(query: str, params: tuple[str, ...], fmt: str, store_dsn: str | None) -> None:
    """Run one SQL statement against the store and print its rows.

    \b
        execscope sql "SELECT SpanName, count() FROM otel_traces GROUP BY SpanName"
        execscope sql "SELECT * FROM cpg_nodes WHERE module = {m:String}" -p m=myapp.core
    """
    from execscope.queries.sql import run_sql

    bound = _name_values(params)
    store = _open(store_dsn)
    try:
        result = run_sql(store, query, bound or None)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    print_rows(result.column_names, result.rows, fmt)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--jobs", "-j", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes (0: one per core).")
@FORMAT_OPTION
@STORE_OPTION
def analyze(paths: tuple[str, ...], jobs: int, fmt: str, store_dsn: str | None) -> None:
    """Build the code property graph (AST, CFG, CDG, data flow, calls, function facts) of every .py
    file under PATHS into the store. Unchanged files (same code version) are skipped; files that fail
    (syntax errors, undecodable, too large, too deeply nested) are reported and skipped.

    \b
        execscope analyze src/ --jobs 4
        execscope query cfg-violations --format json
    """
    from execscope.collector.clickhouse_writer import ClickHouseWriter
    from execscope.project_analysis import analyse_project

    store = _open(store_dsn)
    try:
        report = analyse_project(paths, ClickHouseWriter(store), jobs)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for file, reason in report.errors:
        click.echo(f"execscope: skipped {file}: {reason}", err=True)
    summary = report.as_dict()
    failed = summary.pop("failed")
    if fmt == "json":
        summary["failed"] = failed
        print_rows(list(summary), [list(summary.values())], fmt)
    else:
        print_rows(list(summary), [list(summary.values())], fmt)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--budget", type=click.FloatRange(min=1.0), required=True, metavar="RATIO",
              help="Overhead budget as a ratio of run times: 1.3 lets the recorded program take 30% longer.")
@click.option("--from-store", "store_dsn", envvar=ENV_STORE, default=None, metavar="DSN",
              help="The store holding a recording of the program (at --level functions or finer) and its CPG; "
                   "with COMMAND, where COMMAND is recorded first. Default: ./.execscope/db. Env: EXECSCOPE_STORE.")
@click.option("--include", "-i", multiple=True, metavar="GLOB", help="With COMMAND: the modules to record.")
@click.option("--exclude", "-x", multiple=True, metavar="GLOB", help="With COMMAND: modules never to record.")
@click.option("--headroom", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="Fraction of the budget's allowance (after the fixed cost) left unspent, for the run-to-run "
                   "noise of the program's time: at 0 a plan predicted at exactly the budget exceeds it one run "
                   "in two.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="With COMMAND: how many plain runs measure the baseline, runs recording nothing the fixed "
                   "cost, and timed profiles a recorded call's cost (medians; interleaved).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="execscope-plan.toml", show_default=True,
              help="Where the plan file is written (apply it with `execscope run --plan FILE -- COMMAND`).")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="With COMMAND on an embedded store: run the first plan --repeat times (each beside a plain "
                   "run), scale the model's per-function costs by what it cost over its prediction, and plan "
                   "again.")
@click.option("--baseline-s", "baseline_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The program's plain run time in seconds (default: measured with COMMAND, else estimated "
                   "from the recording).")
@FORMAT_OPTION
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def plan(budget: float, store_dsn: str | None, include: tuple[str, ...], exclude: tuple[str, ...], headroom: float,
         repeat: int, out_file: str, calibrate: bool, baseline_s: float | None, fmt: str,
         command: tuple[str, ...]) -> None:
    """Plan what to record: per function a level and a sampling rate that maximise debugging value
    with the predicted overhead within --budget; writes a plan file and prints what it records.

    \b
        execscope run --include 'myapp*' -- python -m myapp      # a functions-level recording
        execscope plan --budget 1.3 --out plan.toml
        execscope run --plan plan.toml -- python -m myapp
        execscope plan --budget 1.3 --include 'myapp*' -- python -m myapp   # measures, records, then plans

    With COMMAND it is recorded once at statements level with adaptive sampling (the profile: calls,
    and events per call, measured; it creates the store and its CPG), then --repeat times each: plain
    (the median is the baseline), recording nothing (less the baseline: what any plan costs before its
    first recorded call), gating every call (less that: what recording anything costs) and the profile
    again into a copy of the store (less the runs recording nothing: what a recorded call costs); its
    output goes to stderr. The modules the plan records in are then rewritten into the rewrite cache.
    On an embedded store the plan is then calibrated (--no-calibrate: not): run --repeat times beside
    as many plain runs, what it cost over its prediction scales the model's per-function costs, and
    the plan is made again with them.
    """
    import tempfile

    from execscope.instrumentation.rewrite.import_hook import unchanged, warm_cache
    from execscope.instrumentation.rewrite.plan import dump_plan
    from execscope.plan_runs import MeasuredRuns, measure
    from execscope.plan_runs import calibrate as calibration_runs
    from execscope.queries.planner import (
        Calibration,
        CostModel,
        PlanResult,
        make_plan,
        module_files,
    )
    from execscope.recording import resolve_python

    fixed_ns = 0.0
    profile_ns: float | None = None
    skipping_ns: float | None = None
    runs: MeasuredRuns | None = None
    if command:
        if not include:
            raise click.UsageError("with COMMAND, give --include GLOB naming the modules to record")
        try:
            runs = measure(resolve_python(command), include, exclude, store_dsn, plain_runs=repeat)
        except FileNotFoundError:
            raise click.ClickException(f"command not found: {command[0]}") from None
        if runs.recorded_returncode != 0 or runs.plain_returncode != 0:
            click.echo(f"execscope: the measured runs exited with {runs.plain_returncode} (plain) and "
                       f"{runs.recorded_returncode} (recorded); planning from what they measured", err=True)
        baseline_s = baseline_s or runs.baseline_ns / 1e9
        fixed_ns, profile_ns, skipping_ns = runs.fixed_ns, runs.profile_ns, runs.skipping_extra_ns
    ahead: dict[str, tuple[str, str]] | None = None  # modules whose recorded file is still here

    def planned(model: CostModel | None, baseline_ns: float | None, fixed: float) -> PlanResult:
        """The plan, its modules rewritten into the rewrite cache where their recorded files are still
        here (so that its first run does not rewrite them at import)."""
        nonlocal ahead
        store = _open(store_dsn)
        try:
            if ahead is None:  # read once: each file is read and hashed again only to rewrite it
                ahead = {m: fv for m, fv in module_files(store).items() if unchanged(*fv)} if command else {}
            made = make_plan(store, budget, model=model, baseline_ns=baseline_ns, fixed_ns=fixed, headroom=headroom,
                             profile_ns=profile_ns, skipping_ns=skipping_ns, rewritten_ahead=set(ahead))
        except (ValueError, StoreError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            store.close()
        if ahead:
            warmed = sum(warm_cache(m, f, made.plan, v) for m, (f, v) in sorted(ahead.items()))
            made.notes.append(f"rewritten into the rewrite cache for the plan's first run: {warmed} of the modules "
                              f"it records in")
        return made

    result = planned(None, baseline_s * 1e9 if baseline_s else None, fixed_ns)
    calibration: Calibration | None = None
    if command and calibrate and runs is not None and result.variable_ns > 0:
        with tempfile.TemporaryDirectory(prefix="execscope-plan-") as tmp:
            first_file = str(Path(tmp) / "first.toml")
            Path(first_file).write_text(dump_plan(result.plan), encoding="utf-8")
            cal = calibration_runs(resolve_python(command), first_file, include, exclude, store_dsn, runs=repeat)
        if cal is not None and cal.planned_returncode != runs.plain_returncode:
            click.echo(f"execscope: under the first plan the command exited with {cal.planned_returncode} (plain: "
                       f"{runs.plain_returncode}); calibrating from what it measured", err=True)
        if cal is not None:
            calibration = Calibration.of(result, fixed_ns, runs.plain_ns + cal.plain_ns, runs.fixed_ns_over,
                                         cal.planned_median_ns, cal.statement_events_median, len(cal.planned_ns))
            result = planned(CostModel(calibration=calibration.scale), calibration.baseline_ns, calibration.fixed_ns)
            result.notes.append(calibration.note())
    summary = result.summary()
    summary["statement_events"] = round(result.statement_events)
    summary["uniform_statements_rate"] = round(result.uniform_rate, 6)
    if calibration is not None:
        summary["calibration_run"] = calibration.summary()
    predicted = {"budget": budget, "overhead": round(result.predicted_ratio, 4),
                 "baseline_s": round(result.baseline_ns / 1e9, 4), "fixed_s": round(result.fixed_ns / 1e9, 4),
                 "span_ns": round(result.model.span_ns, 1),
                 "skipped_call_ns": round(result.model.skipped_call_ns, 1),
                 "counted_call_ns": round(result.model.counted_call_ns, 1), "scale": round(result.model.scale, 4),
                 "calibration": round(result.model.calibration, 4)}
    Path(out_file).write_text(dump_plan(result.plan, comments=[
        f"execscope plan --budget {budget}: predicted overhead {result.predicted_ratio:.3f}x "
        f"(baseline {result.baseline_ns / 1e9:.3f}s)", *result.notes], predicted=predicted), encoding="utf-8")
    if result.nothing_recorded:
        click.echo(f"execscope: {result.nothing_recorded}", err=True)
    if fmt == "json":
        print(json.dumps({**summary, "plan": out_file, "functions": [
            dict(zip(PLAN_COLUMNS, row)) for row in result.rows()]}))
        return
    print_rows(PLAN_COLUMNS, result.rows(), fmt)
    levels = ", ".join(f"{n} {k}" for k, n in summary["levels"].items() if n)  # type: ignore[attr-defined]
    click.echo(f"execscope: plan written to {out_file}: predicted overhead {result.predicted_ratio:.3f}x of "
               f"{budget}x allowed; {levels}; {summary['sampled']} sampled; about "
               f"{summary['statement_events']} statement events (a plan maximising them alone: "
               f"{summary['statement_events_at_most']})", err=True)


PLAN_COLUMNS = ("function", "calls", "level", "rate", "overhead_ms", "value")


@main.command()
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the query. Repeatable.")
@FORMAT_OPTION
@STORE_OPTION
def query(name: str, params: tuple[str, ...], fmt: str, store_dsn: str | None) -> None:
    """Run a named query joining the recording with the code property graph.

    \b
    NAME is one of:
      hot-nodes        functions by total/self/p95 time (-p statements=true: statements)
      slow-paths       paths through -p function=pkg.mod:f ranked by p95 latency
      exceptions       raised and caught, per node, with traces
      coverage         CFG nodes and edges executed vs not, per function
      state-at         variables of every live call: -p trace=T -p at=N
      value-history    every value of -p var=x, in order, and where
      call-graph       runtime vs static call edges
      cfg-violations   observed transitions the CFG lacks (empty: sound)
      breakpoint-hits  where -p spec=FILE:LINE|NAME|'call NAME in loop'|'flow F.V'|'watch F.V' stops in -p trace=T
      processes        processes and hosts a trace touched (-p trace=T), clock offsets
      clock-skew       clock skew per pair of processes that talked (round trips; bounds one way)
    \b
        execscope query hot-nodes -p limit=10
        execscope query cfg-violations --format json
    """
    from execscope.queries.named import QUERIES, QueryParameterError, run_named

    bound = _name_values(params)
    if name not in QUERIES:
        raise click.BadParameter(f"unknown query {name!r}; known: {', '.join(sorted(QUERIES))}",
                                 param_hint="NAME")
    store = _open(store_dsn)
    try:
        result = run_named(store, name, bound)
    except QueryParameterError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    print_rows(result.column_names, result.rows, fmt)


@main.command()
@click.argument("trace_id")
@click.option("--format", "fmt", type=click.Choice(["tui", "text", "json"]), default=None,
              help="tui: the interactive viewer (default on a terminal); text: a transcript; "
                   "json: the frames as one JSON array.")
@click.option("--at", "at", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start at this frame (0-based position in the trace).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="text/json: at most this many frames.")
@click.option("--html", "html_file", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML page (the viewer's keys in a browser) instead.")
@click.option("--max-frames", type=click.IntRange(min=1), default=5000, show_default=True,
              help="--html: embed at most this many frames around --at (the page says what it left out).")
@STORE_OPTION
def cinema(trace_id: str, fmt: str | None, at: int, count: int | None, html_file: str | None, max_frames: int,
           store_dsn: str | None) -> None:
    """Step through a recorded trace: source with the current line, the variables, calls and returns.

    \b
        execscope traces                      # pick a trace id
        execscope cinema 4bf92f3577b34da6a3ce929d0e0e4736
        execscope cinema 4bf92f... --format json --at 100 --count 50
        execscope cinema 4bf92f... --html cinema.html --at 100
    """
    import json as _json

    from execscope.queries.cinema import TraceNotFound, open_cinema, public, transcript_line

    if fmt is None:
        fmt = "tui" if sys.stdout.isatty() and sys.stdin.isatty() else "text"
    store = _open(store_dsn)
    try:
        try:
            film = open_cinema(store, trace_id, window=256 if fmt == "tui" and html_file is None else 4096)
        except TraceNotFound as exc:
            raise click.ClickException(str(exc)) from None
        if at >= film.total:
            raise click.BadParameter(f"the trace has {film.total} frames (0..{film.total - 1})", param_hint="--at")
        stop = film.total if count is None else at + count
        if html_file is not None:
            from execscope.dashboards.html_cinema import render

            page = render(film, at, max_frames)
            with open(html_file, "w", encoding="utf-8") as fh:
                fh.write(page.html)
            click.echo(f"execscope: wrote {html_file}: frames {page.first}..{page.first + page.frames - 1} of "
                       f"{page.total} (open it in a browser; keys as in the terminal viewer)", err=True)
        elif fmt == "tui":
            from execscope.cinema_tui import run_cinema

            run_cinema(film, at)
        elif fmt == "json":
            out = sys.stdout
            out.write("[")
            for i, frame in enumerate(film.frames(at, stop)):
                out.write(("," if i else "") + _json.dumps(public(frame), default=str))
            out.write("]\n")
        else:
            for frame in film.frames(at, stop):
                click.echo(transcript_line(frame))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


@main.command()
@click.argument("trace_id")
@click.option("--at", "at", type=click.IntRange(min=0), default=None, metavar="FRAME",
              help="Explain this frame of the cinema (a write, return, exception, statement or call) instead "
                   "of the failure.")
@click.option("--var", default=None, metavar="NAME", help="With --at: explain this variable as seen at FRAME.")
@click.option("--exception", "on_exception", is_flag=True,
              help="Explain the exception the trace failed with (the default without --at).")
@click.option("--max-steps", type=click.IntRange(min=1), default=16, show_default=True,
              help="At most this many steps; what is not followed is listed.")
@click.option("--provider", envvar="EXECSCOPE_LLM_PROVIDER", default="offline", show_default=True,
              type=click.Choice(["offline", "openai", "anthropic", "gemini", "ollama"]),
              help="offline: the chain alone. Otherwise the chain, the source and the data flow also go to this "
                   "model, whose explanation and fix are streamed after the chain. Env: EXECSCOPE_LLM_PROVIDER.")
@click.option("--model", envvar="EXECSCOPE_LLM_MODEL", default=None, help="Model name. Env: EXECSCOPE_LLM_MODEL.")
@click.option("--base-url", envvar="EXECSCOPE_LLM_BASE_URL", default=None,
              help="API base URL (e.g. http://127.0.0.1:11434/v1 for Ollama's OpenAI API). "
                   "Env: EXECSCOPE_LLM_BASE_URL. Keys come from the environment only (see README).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@STORE_OPTION
def explain(trace_id: str, at: int | None, var: str | None, on_exception: bool, max_steps: int, provider: str,
            model: str | None, base_url: str | None, fmt: str, store_dsn: str | None) -> None:
    """Explain a failure (or a value) of a recorded trace: the chain of recorded values that produced
    it, walked backwards along the data flow, with file:line and values; with --provider, a model's
    explanation and suggested fix too. The chain always prints, even when the model cannot be reached.

    \b
        execscope explain 4bf92f3577b34da6a3ce929d0e0e4736
        execscope explain 4bf92f... --at 120 --var total
        OPENAI_API_KEY=... execscope explain 4bf92f... --provider openai --model gpt-4.1-mini
    """
    import json as _json

    from execscope.queries.llm import SYSTEM_PROMPT, ProviderError, build_context, make_provider
    from execscope.queries.why import ChainError, why

    if on_exception and at is not None:
        raise click.UsageError("give --exception or --at, not both")
    if var is not None and at is None:
        raise click.UsageError("--var needs --at FRAME")
    failed = ""
    store = _open(store_dsn)
    try:
        chain = why(store, trace_id, at=at, var=var, max_steps=max_steps)
        try:
            llm = make_provider(provider, model, base_url)
        except ProviderError as exc:  # the chain still prints
            llm, failed = None, str(exc)
        context = build_context(store, chain) if llm is not None else ""
    except ChainError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    answer: list[str] = []
    if fmt == "text":
        click.echo(chain.text(), nl=False)
    if llm is not None:
        if fmt == "text":
            click.echo(f"\n{llm.name} ({llm.model}):")
        try:
            for piece in llm.stream(SYSTEM_PROMPT, context):
                answer.append(piece)
                if fmt == "text":
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        except ProviderError as exc:
            failed = str(exc)
        if fmt == "text" and answer:
            click.echo("")
    if fmt == "json":
        doc = chain.as_dict()
        if provider != "offline":
            doc["provider"] = provider
            doc["answer"] = "".join(answer)
            doc["error"] = failed
        click.echo(_json.dumps(doc, default=str))
    if failed:
        click.echo(f"execscope: {failed} (the chain above needs no model)", err=True)
        sys.exit(1)


TOKEN_OPTION = click.option(
    "--token", default=None, metavar="TOKEN",
    help="A secret every client must present (at least 16 characters); required to listen on a non-loopback "
         "address. Env: EXECSCOPE_TOKEN.")


def _server_token(token: str | None, host: str, server: str) -> str | None:
    """The token of a server about to listen on ``host``, or a clear refusal (exit 2)."""
    from execscope.serving import ServingError, check_bind, resolve_token

    try:
        resolved = resolve_token(token)
        check_bind(host, resolved, server)
    except ServingError as exc:
        raise click.UsageError(str(exc)) from None
    return resolved


@main.command()
@STORE_OPTION
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio: for an agent that starts this command; http: streamable HTTP at http://HOST:PORT/mcp.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="http: the port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="http: the address to listen on (another than loopback needs --token).")
@TOKEN_OPTION
@click.option("--idle-close", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="SECONDS",
              help="Close the store after this long without a question, so `execscope run` can record into it.")
def mcp(store_dsn: str | None, transport: str, port: int, host: str, token: str | None, idle_close: float) -> None:
    """Serve the recordings to coding agents over the Model Context Protocol: read-only tools
    (list_traces, find_failures, frames, state_at, value_history, why, hot_paths, coverage,
    function_graph, source, sql), every answer bounded.

    \b
        execscope mcp                                  # stdio, e.g. in an agent's MCP server list
        execscope mcp --transport http --port 8765     # http://127.0.0.1:8765/mcp
        EXECSCOPE_TOKEN=... execscope mcp --transport http --host 0.0.0.0
                                                       # clients send Authorization: Bearer <token>
    """
    from execscope.mcp_server import serve
    from execscope.storage.store import resolve_address

    secret = _server_token(token, host, "mcp") if transport == "http" else None
    try:
        resolve_address(store_dsn)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    serve(store_dsn, transport, port=port, host=host, idle_close=idle_close, token=secret)


@main.command()
@STORE_OPTION
@click.option("--port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve on TCP HOST:PORT (0: any free port, printed on stderr) instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --port: the address to listen on (another than loopback needs --token).")
@TOKEN_OPTION
@click.option("--manifest", default=None, hidden=True, metavar="PATH",
              help="The editor extension's manifest (VS Code passes the adapter 'program' path; unused).")
def dap(store_dsn: str | None, port: int | None, host: str, token: str | None, manifest: str | None) -> None:
    """A Debug Adapter Protocol server over recordings (stdio by default): step forwards and
    backwards, breakpoints and watchpoints both ways, in VS Code, Neovim or any DAP client.

    \b
        execscope dap                 # launch with {"trace": "latest"} or {"program": "app.py"}
        execscope dap --port 4711
        execscope dap --port 4711 --host 0.0.0.0 --token TOKEN
                                      # each client puts "token": TOKEN in its launch arguments
    """
    from execscope.dap.session import serve_stdio, serve_tcp

    if port is None:
        serve_stdio(store_dsn)
    else:
        secret = _server_token(token, host, "dap")
        serve_tcp(port, store_dsn, host=host, token=secret,
                  announce=lambda p: click.echo(f"execscope dap: listening on {host}:{p}", err=True))


@main.command()
@STORE_OPTION
@click.option("--level", type=LEVEL_CHOICE, default="statements", show_default=True)
def demo(store_dsn: str | None, level: str) -> None:
    """Record the bundled shop example (it has a bug) and show how to find it."""
    from execscope.demo.runner import run_demo

    sys.exit(run_demo(store_dsn, level))


def _check_policy() -> Any:
    """The secrets policy of this environment (EXECSCOPE_REDACT_*), value patterns always on: what a
    store is checked and scrubbed against."""
    from execscope.instrumentation.capture.redaction import policy_from

    errors: list[str] = []
    policy = policy_from(patterns=True, errors=errors)
    for problem in errors:
        click.echo(f"execscope: redaction setting ignored: {problem}", err=True)
    return policy


@main.command("redact-check")
@FORMAT_OPTION
@STORE_OPTION
def redact_check(fmt: str, store_dsn: str | None) -> None:
    """Scan the store for secrets the redaction policy would hide (keys, tokens, passwords in URLs and
    connection strings, card numbers, values under secret names, ...) and report where they are:
    table, column, map key, node, kind and count. Exits 1 when anything is found, 0 when the store
    is clean. `execscope storage scrub` rewrites what it finds.

    \b
        execscope redact-check
        execscope redact-check --store chdb:///srv/recordings/db --format json
    """
    from execscope.storage.secrets import FINDING_COLUMNS, check_store

    policy = _check_policy()
    store = _open(store_dsn)
    try:
        findings = check_store(store, policy)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    print_rows(FINDING_COLUMNS, [f.row() for f in findings], fmt)
    total = sum(f.count for f in findings)
    click.echo(f"execscope: {total} secret(s) found in {store.address}" if total
               else f"execscope: no secrets found in {store.address}", err=True)
    sys.exit(1 if findings else 0)


@main.group()
def dashboards() -> None:
    """Grafana dashboards over the store (ClickHouse datasource plugin)."""


@dashboards.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Writes DIR/dashboards/*.json and DIR/provisioning/{datasources,dashboards}/execscope.yaml.")
@click.option("--datasource-uid", default="execscope-clickhouse", show_default=True, metavar="UID",
              help="uid of the ClickHouse datasource: the provisioned one, and the dashboards' initial choice.")
def dashboards_export(out_dir: str, datasource_uid: str) -> None:
    """Write the six Grafana dashboards (Execution Cinema, Code Heatmap, Call Graph, Exceptions,
    Coverage, Pipeline Health) and provisioning files for a Grafana with the ClickHouse plugin.

    \b
        execscope dashboards export --out ./grafana
        GF_PATHS_PROVISIONING=./grafana/provisioning EXECSCOPE_CH_HOST=127.0.0.1 ... grafana server
    """
    from pathlib import Path

    from execscope.dashboards.grafana import export

    dashboards_written, files = export(Path(out_dir), datasource_uid)
    click.echo(f"execscope: wrote {len(dashboards_written)} dashboards to {Path(out_dir) / 'dashboards'} and "
               f"{len(files)} provisioning files to {Path(out_dir) / 'provisioning'} (datasource uid "
               f"{datasource_uid}; its address comes from EXECSCOPE_CH_HOST/PORT/USER/PASSWORD/DATABASE)", err=True)


@main.group()
def storage() -> None:
    """Manage the store: schema, secrets."""


@storage.command("scrub")
@click.option("--dry-run", is_flag=True, help="Say what would be rewritten; change nothing.")
@FORMAT_OPTION
@STORE_OPTION
def storage_scrub(dry_run: bool, fmt: str, store_dsn: str | None) -> None:
    """Rewrite, in place, every stored value the redaction policy would have hidden (a store recorded
    before the policy, or with value patterns off): ALTER TABLE ... UPDATE (span names, which are part
    of the sorting key, by inserting the spans again). Prints what was rewritten per table and column;
    then `execscope redact-check` proves the store clean. Stop recording into the store first.

    \b
        execscope storage scrub --dry-run
        execscope storage scrub && execscope redact-check
    """
    from execscope.storage.secrets import SCRUB_COLUMNS, scrub_store

    policy = _check_policy()
    store = _open(store_dsn)
    try:
        report = scrub_store(store, policy, dry_run=dry_run)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    print_rows(SCRUB_COLUMNS, report.rows(), fmt)
    n = sum(report.updated.values()) + sum(report.reinserted.values())
    verb = "would rewrite" if dry_run else "rewrote"
    click.echo(f"execscope: {verb} {n} value(s) in {store.address}" +
               (f"; {len(report.left)} left (see rows)" if report.left else ""), err=True)


@storage.command("ddl")
@click.option("--cluster", default=None, metavar="NAME",
              help="Print the schema for this ClickHouse cluster (remote_servers name): ReplicatedMergeTree tables "
                   "and materialized views ON CLUSTER, Distributed tables over the tables sharded by trace.")
def storage_ddl(cluster: str | None) -> None:
    """Print the schema as SQL statements, generated from the numbered migrations (no store is opened).

    \b
        execscope storage ddl                         # one server: what `storage migrate` applies
        execscope storage ddl --cluster prod > schema.sql
        clickhouse client --multiquery < schema.sql   # on any node of the cluster

    With --cluster, tables with a TraceId column are sharded by cityHash64(TraceId) (NAME_local on every
    node, NAME a Distributed table over them); the others (code property graph, collector stats, schema
    versions) are replicated to every node. The schema version is recorded, so execscope finds the
    schema current on any node.
    """
    from execscope.storage.cluster import ClusterDdlError, cluster_ddl, render, single_node_ddl

    try:
        click.echo(render(cluster_ddl(cluster) if cluster else single_node_ddl()), nl=False)
    except ClusterDdlError as exc:
        raise click.ClickException(str(exc)) from None


@storage.command("migrate")
@STORE_OPTION
def storage_migrate(store_dsn: str | None) -> None:
    """Create the tables, or apply pending schema migrations, and print the schema version."""
    from execscope.storage.migrations import current_version

    store = _open(store_dsn)
    try:
        click.echo(f"{store.address}: schema version {current_version(store)}")
    finally:
        store.close()
