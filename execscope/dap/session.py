"""The DAP session: one client, requests translated into calls on a :class:`ReplayRuntime`.

Capabilities are declared once (``initialize``); ``stopped`` events are sent from one place
(:meth:`DapSession._stopped`). A malformed message or an unknown request gets an error response and
the session goes on. Threading: requests are handled one at a time on the reading thread.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from typing import Any, BinaryIO

from execscope.dap.protocol import Connection, ProtocolError
from execscope.dap.runtime import ReplayRuntime, StackEntry, Stop
from execscope.queries.breakpoints import Breakpoint, BreakpointError
from execscope.queries.safe_eval import EvalError, Opaque, interpolate, parse_value
from execscope.serving import DEFAULT_HOST, DapTokenGate, TokenGuard, check_bind

CAPABILITIES: dict[str, Any] = {
    "supportsConfigurationDoneRequest": True,
    "supportsStepBack": True,
    "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True,
    "supportsLogPoints": True,
    "supportsFunctionBreakpoints": True,
    "supportsDataBreakpoints": True,
    "supportsGotoTargetsRequest": True,
    "supportsRestartFrame": True,
    "supportsExceptionInfoRequest": True,
    "supportsEvaluateForHovers": True,
    "exceptionBreakpointFilters": [
        {"filter": "raised", "label": "Raised Exceptions", "default": False},
        {"filter": "uncaught", "label": "Uncaught Exceptions", "default": True},
    ],
}


class RequestError(Exception):
    """Answered as a failed response with this message."""


class DapSession:
    def __init__(self, reader: BinaryIO, writer: BinaryIO, store_dsn: str | None = None,
                 token: str | None = None) -> None:
        """One client's session. With ``token`` (a TCP server: see execscope/serving.py) only
        ``initialize`` is answered until a ``launch``/``attach`` carries the token; a request without
        it is refused and ends the connection."""
        self.conn = Connection(reader, writer)
        self._gate = DapTokenGate(TokenGuard(token)) if token else None
        self.store_dsn = store_dsn
        self.store: Any = None
        self.runtime: ReplayRuntime | None = None
        self.stop_on_entry = False
        self._handles: list[Any] = []
        self._frames: dict[int, StackEntry] = {}
        self._sources: dict[int, tuple[str, str]] = {}
        self._source_refs: dict[str, int] = {}
        self._pending_exceptions: list[str] = ["uncaught"]
        self._done = False
        self._frozen = False

    # --- loop ---------------------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self._done:
                try:
                    message = self.conn.read()
                except ProtocolError as exc:
                    self.conn.error({"seq": 0, "command": ""}, f"malformed message: {exc}")
                    continue
                if message is None:
                    break
                self.handle(message)
        finally:
            if self.store is not None:
                self.store.close()
            if self._frozen:
                gc.unfreeze()

    def handle(self, request: dict[str, Any]) -> None:
        if request.get("type") != "request" or not isinstance(request.get("command"), str):
            self.conn.error(request, "not a DAP request (expected type 'request' and a command)")
            return
        if self._gate is not None:
            refusal = self._gate.admit(request)
            if refusal is not None:
                self.conn.error(request, str(refusal["message"]))
                self._done = self._gate.closing
                return
        command = request["command"]
        handler = getattr(self, "on_" + command, None)
        if handler is None:
            self.conn.error(request, f"unknown request {command!r}")
            return
        args = request.get("arguments") or {}
        try:
            if not isinstance(args, dict):
                raise RequestError("arguments must be an object")
            if command not in ("initialize", "launch", "attach", "disconnect") and self.runtime is None:
                raise RequestError(f"{command}: no recording is open (launch first)")
            body = handler(args)
        except (RequestError, BreakpointError, EvalError) as exc:
            self.conn.error(request, str(exc))
            return
        except Exception as exc:  # the session goes on: the client sees what failed
            self.conn.error(request, f"{command} failed: {type(exc).__name__}: {exc}")
            return
        if isinstance(body, tuple):  # (response body, follow-up to run after the response)
            self.conn.respond(request, body[0])
            body[1]()
        else:
            self.conn.respond(request, body)

    @property
    def rt(self) -> ReplayRuntime:
        assert self.runtime is not None
        return self.runtime

    def _stopped(self, stop: Stop) -> None:
        """The one place stopped events are sent: handles from the previous stop are dropped."""
        self._handles.clear()
        self._frames.clear()
        thread = self.rt.thread_of(stop.position)
        body: dict[str, Any] = {"reason": stop.reason, "threadId": thread.id if thread else 1,
                                "allThreadsStopped": True}
        if stop.text:
            body["description"] = stop.text
            body["text"] = stop.text
        if stop.breakpoints:
            body["hitBreakpointIds"] = [bp.id for bp in stop.breakpoints]
        self.conn.event("stopped", body)

    # --- lifecycle ----------------------------------------------------------------------------------
    def on_initialize(self, args: dict[str, Any]) -> dict[str, Any]:
        return CAPABILITIES

    def on_launch(self, args: dict[str, Any]) -> Any:
        from execscope.queries.cinema import TraceNotFound, open_cinema
        from execscope.queries.traces import latest_trace
        from execscope.storage.store import StoreError, open_store

        args.pop("token", None)  # a TCP server's token: already checked by the connection's gate
        dsn = args.get("store") or self.store_dsn
        if args.get("program"):
            self._record(args, dsn)
        if self.store is not None:  # a launch after a failed one
            self.store.close()
            self.store = None
        try:
            store = open_store(dsn)
        except StoreError as exc:
            raise RequestError(f"cannot open the store: {exc}") from None
        try:
            trace = str(args.get("trace") or "latest")
            if trace == "latest":
                latest = latest_trace(store)
                if latest is None:
                    raise RequestError(f"the store {store.address} holds no traces")
                trace = latest
            cinema = open_cinema(store, trace, window=int(args.get("window", 256)))
        except TraceNotFound as exc:
            store.close()
            raise RequestError(str(exc)) from None
        except BaseException:
            store.close()
            raise
        self.store = store
        self.runtime = ReplayRuntime(cinema)
        self._freeze()
        self.stop_on_entry = bool(args.get("stopOnEntry", False))
        self.rt.exception_breakpoint = self.rt.matcher.exceptions(self._pending_exceptions) \
            if self._pending_exceptions else None
        return {}, lambda: self.conn.event("initialized")

    def _freeze(self) -> None:
        """Keep the garbage collector off the trace's index (a million objects on a large trace,
        alive as long as the session): a full collection walking it takes ~100 ms, in whichever
        request it happens to land. Undone when the session ends (:meth:`serve`)."""
        gc.collect()
        gc.freeze()
        self._frozen = True

    def _record(self, args: dict[str, Any], dsn: str | None) -> None:
        program = str(args["program"])
        include = args.get("include") or [os.path.splitext(os.path.basename(program))[0]]
        command = [sys.executable, "-m", "execscope", "run", "--level", str(args.get("level", "statements"))]
        if dsn:
            command += ["--store", dsn]
        for glob in include:
            command += ["--include", str(glob)]
        command += ["--", "python", program, *[str(a) for a in args.get("args", [])]]
        done = subprocess.run(command, cwd=args.get("cwd") or None, capture_output=True, text=True, check=False)
        self.conn.event("output", {"category": "stderr", "output": done.stderr})
        if done.stdout:
            self.conn.event("output", {"category": "stdout", "output": done.stdout})
        if "stored" not in done.stderr:
            raise RequestError(f"recording {program} failed: {done.stderr.strip()[-500:]}")

    def on_configurationDone(self, args: dict[str, Any]) -> Any:
        def start() -> None:
            if self.stop_on_entry:
                self.rt.position = 0
                self._stopped(Stop(0, "entry"))
            else:
                self._stopped(self.rt.run(True, self._log, start=-1))
        return {}, start

    def on_disconnect(self, args: dict[str, Any]) -> dict[str, Any]:
        self._done = True
        if self.store is not None:  # release an embedded store before answering
            self.store.close()
            self.store = None
        return {}

    def on_terminate(self, args: dict[str, Any]) -> Any:
        return {}, lambda: self.conn.event("terminated")

    # --- breakpoints --------------------------------------------------------------------------------
    def _log(self, bp: Breakpoint, position: int) -> None:
        frame = self.rt.frame(position)
        self.conn.event("output", {"category": "console", "output": interpolate(bp.log_message or "",
                                                                                frame["locals"]) + "\n",
                                   "line": frame["line"]})

    def _describe(self, bp: Breakpoint, line: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": bp.id, "verified": bool(bp.positions)}
        if line is not None:
            out["line"] = line
        if not bp.positions:
            out["message"] = f"{bp.description}: never executed in this recording"
        return out

    def on_setBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        path = (args.get("source") or {}).get("path") or ""
        made, out = [], []
        for spec in args.get("breakpoints", []):
            try:
                bp = self.rt.matcher.line(path, int(spec["line"]), spec.get("condition"),
                                          spec.get("hitCondition"), spec.get("logMessage"))
            except BreakpointError as exc:
                out.append({"verified": False, "line": spec.get("line"), "message": str(exc)})
                continue
            made.append(bp)
            out.append(self._describe(bp, int(spec["line"])))
        self.rt.line_breakpoints[path] = made
        self.rt.prepare(made)
        return {"breakpoints": out}

    def on_setFunctionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        made, out = [], []
        for spec in args.get("breakpoints", []):
            try:
                bp = self.rt.matcher.function(str(spec["name"]), spec.get("condition"), spec.get("hitCondition"))
            except BreakpointError as exc:
                out.append({"verified": False, "message": str(exc)})
                continue
            made.append(bp)
            out.append(self._describe(bp))
        self.rt.function_breakpoints = made
        self.rt.prepare(made)
        return {"breakpoints": out}

    def on_setExceptionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        filters = [f for f in args.get("filters", []) if f in ("raised", "uncaught")]
        self._pending_exceptions = filters
        self.rt.exception_breakpoint = self.rt.matcher.exceptions(filters) if filters else None
        return {"breakpoints": [{"verified": True} for _ in filters]}

    def on_dataBreakpointInfo(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name", ""))
        ref = args.get("variablesReference")
        handle = self._handle(ref) if ref else None
        span = handle[1] if handle is not None and handle[0] == "scope" else None
        if span is None:
            frame = self.rt.frame()
            span = frame["span_id"] if name in frame["locals"] else None
        if span is None:
            return {"dataId": None, "description": f"{name} is not a variable of a recorded call here"}
        function = self.rt.cinema.calls()[span].function
        return {"dataId": f"{span}/{name}", "description": f"{name} in {function}", "accessTypes": ["write"],
                "canPersist": False}

    def on_setDataBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        made, out = [], []
        for spec in args.get("breakpoints", []):
            span, _, var = str(spec.get("dataId", "")).partition("/")
            if not var:
                out.append({"verified": False, "message": f"bad dataId {spec.get('dataId')!r}"})
                continue
            bp = self.rt.matcher.data(span, var, spec.get("condition"), spec.get("hitCondition"))
            made.append(bp)
            out.append(self._describe(bp))
        self.rt.data_breakpoints = made
        self.rt.prepare(made)
        return {"breakpoints": out}

    # --- moving -------------------------------------------------------------------------------------
    def _after(self, stop: Stop) -> Any:
        return {}, lambda: self._stopped(stop)

    def on_next(self, args: dict[str, Any]) -> Any:
        return self._after(self.rt.step_over(True))

    def on_stepIn(self, args: dict[str, Any]) -> Any:
        return self._after(self.rt.step_in(True))

    def on_stepOut(self, args: dict[str, Any]) -> Any:
        return self._after(self.rt.step_out(True))

    def on_stepBack(self, args: dict[str, Any]) -> Any:
        return self._after(self.rt.step_over(False))

    def on_continue(self, args: dict[str, Any]) -> Any:
        stop = self.rt.run(True, self._log)
        return {"allThreadsContinued": True}, lambda: self._stopped(stop)

    def on_reverseContinue(self, args: dict[str, Any]) -> Any:
        return self._after(self.rt.run(False, self._log))

    def on_pause(self, args: dict[str, Any]) -> Any:
        return self._after(Stop(self.rt.position, "pause"))

    def on_gotoTargets(self, args: dict[str, Any]) -> dict[str, Any]:
        path = (args.get("source") or {}).get("path") or ""
        line = int(args.get("line", 0))
        targets = []
        for n, position, function in self.rt.line_executions(path, line):
            targets.append({"id": position + 1, "label": f"#{n} {function} line {line} (frame {position})",
                            "line": line})
        return {"targets": targets}

    def on_goto(self, args: dict[str, Any]) -> Any:
        target = int(args.get("targetId", 0)) - 1
        if not 0 <= target < self.rt.cinema.total:
            raise RequestError(f"unknown goto target {args.get('targetId')!r}")
        return self._after(self.rt.goto(target))

    def on_restartFrame(self, args: dict[str, Any]) -> Any:
        entry = self._frames.get(int(args.get("frameId", 0)))
        if entry is None:
            raise RequestError(f"unknown frame {args.get('frameId')!r}")
        return self._after(self.rt.restart_frame(entry.span_id))

    # --- inspecting ---------------------------------------------------------------------------------
    def on_threads(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"threads": [{"id": t.id, "name": t.name} for t in self.rt.threads.threads] or
                [{"id": 1, "name": "main"}]}

    def _source(self, file: str, version: str) -> dict[str, Any]:
        source: dict[str, Any] = {"name": os.path.basename(file) or file, "path": file}
        recorded = self.rt.cinema.source_lines(version, "") if version else None
        on_disk = None
        if os.path.isfile(file):
            try:
                with open(file, encoding="utf-8", errors="replace") as fh:
                    on_disk = fh.read().splitlines()
            except OSError:
                on_disk = None
        if recorded is not None and recorded != on_disk:
            ref = self._source_refs.get(version)
            if ref is None:
                ref = len(self._sources) + 1
                self._sources[ref] = (file, version)
                self._source_refs[version] = ref
            source["sourceReference"] = ref
            source["origin"] = f"recorded code version {version}"
        return source

    def on_stackTrace(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = self.rt.stack(args.get("threadId"))
        start = int(args.get("startFrame", 0))
        levels = int(args.get("levels", 0)) or len(entries)
        frames = []
        for entry in entries[start:start + levels]:
            frame_id = len(self._frames) + 1
            self._frames[frame_id] = entry
            frames.append({"id": frame_id, "name": entry.function, "line": entry.line, "column": 1,
                           "source": self._source(entry.file, entry.code_version)})
        return {"stackFrames": frames, "totalFrames": len(entries)}

    def _new_handle(self, value: Any) -> int:
        self._handles.append(value)
        return len(self._handles)

    def _handle(self, ref: Any) -> Any:
        try:
            return self._handles[int(ref) - 1]
        except (ValueError, TypeError, IndexError):
            raise RequestError(f"unknown variablesReference {ref!r}") from None

    def on_scopes(self, args: dict[str, Any]) -> dict[str, Any]:
        entry = self._frames.get(int(args.get("frameId", 0)))
        if entry is None:
            raise RequestError(f"unknown frame {args.get('frameId')!r}")
        ref = self._new_handle(("scope", entry.span_id, entry.variables))
        return {"scopes": [{"name": "Locals", "presentationHint": "locals", "variablesReference": ref,
                            "namedVariables": len(entry.variables), "expensive": False}]}

    def _variable(self, name: str, text: str, value: Any) -> dict[str, Any]:
        ref = 0
        if isinstance(value, (list, tuple, dict, set, frozenset)) and value:
            ref = self._new_handle(("value", value))
        return {"name": name, "value": text, "type": "" if isinstance(value, Opaque) else type(value).__name__,
                "variablesReference": ref, "evaluateName": name}

    def on_variables(self, args: dict[str, Any]) -> dict[str, Any]:
        handle = self._handle(args.get("variablesReference"))
        out = []
        if handle[0] == "scope":
            for name, text in handle[2].items():
                out.append(self._variable(name, text, parse_value(text)))
        else:
            value = handle[1]
            items = (value.items() if isinstance(value, dict) else
                     enumerate(sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value))
            for key, item in list(items)[:1000]:
                out.append(self._variable(f"[{key!r}]" if isinstance(value, dict) else f"[{key}]", repr(item), item))
        return {"variables": out}

    def on_evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        entry = self._frames.get(int(args.get("frameId", 0) or 0))
        names = entry.variables if entry is not None else self.rt.frame()["locals"]
        expression = str(args.get("expression", ""))
        text, value = self.rt.evaluate(expression, names)
        result = self._variable(expression, text, value)
        return {"result": result["value"], "type": result["type"], "variablesReference": result["variablesReference"]}

    def on_exceptionInfo(self, args: dict[str, Any]) -> dict[str, Any]:
        frame = self.rt.frame()
        if frame["kind"] == "exception":
            kind, _, message = str(frame.get("exception", "")).partition(": ")
            escaped = self.rt.exception_breakpoint is not None and "uncaught" in self._pending_exceptions
            return {"exceptionId": kind, "description": message, "breakMode": "unhandled" if escaped else "always",
                    "details": {"typeName": kind, "message": message}}
        if frame["kind"] == "branch" and ":except#" in frame["node_id"]:
            return {"exceptionId": "caught", "description": f"handled by {frame['source'].strip()}",
                    "breakMode": "always"}
        raise RequestError("no exception at the current position")

    def on_source(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = int(args.get("sourceReference") or (args.get("source") or {}).get("sourceReference") or 0)
        if ref in self._sources:
            file, version = self._sources[ref]
            lines = self.rt.cinema.source_lines(version, file)
        else:
            path = (args.get("source") or {}).get("path") or ""
            lines = None
            if path and os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as fh:
                    lines = fh.read().splitlines()
        if lines is None:
            raise RequestError("no recorded source for this reference")
        return {"content": "\n".join(lines) + "\n", "mimeType": "text/x-python"}


def serve_stdio(store_dsn: str | None = None) -> None:
    DapSession(sys.stdin.buffer, sys.stdout.buffer, store_dsn).serve()


def serve_tcp(port: int, store_dsn: str | None = None, host: str = DEFAULT_HOST,
              announce: Any = None, token: str | None = None) -> None:
    """Serve clients one after another on ``host:port``. A non-loopback ``host`` needs ``token``
    (:func:`execscope.serving.check_bind` raises :class:`~execscope.serving.ServingError` before
    anything listens); with a token every connection must present it in its launch/attach."""
    import socket

    check_bind(host, token, "dap")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, port), family=family) as server:
        if announce is not None:
            announce(server.getsockname()[1])
        while True:
            sock, _ = server.accept()
            with sock, sock.makefile("rb") as reader, sock.makefile("wb") as writer:
                DapSession(reader, writer, store_dsn, token).serve()
