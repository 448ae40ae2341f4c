"""The local Lambda runtime: runs the unchanged handlers declared in the topology.

* An HTTP endpoint implementing the Lambda ``Invoke`` API
  (``POST /2015-03-31/functions/{name}/invocations``), so a handler's own
  ``boto3.client("lambda").invoke(...)`` reaches it through ``AWS_ENDPOINT_URL_LAMBDA``.
* Per function, a pool of worker processes ("containers") that import the handler once
  and keep module state between invocations; the most recently used idle worker is
  reused first, as Lambda tends to. A worker that exceeds the timeout is killed.
* Asynchronous invocations (``InvocationType=Event``) are queued and retried on error
  with the same request id, as Lambda does (``async_retries`` of the topology).
* Event sources polled the way Lambda's pollers do it: SQS queues, Kinesis streams,
  schedules; plus an HTTP API gateway (payload format 2.0) for the topology's routes,
  and a Firehose pump for delivery streams that read a Kinesis stream.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import multiprocessing as mp
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pushpipe import topology as t
from pushpipe_local.runtime import worker as worker_module

log = logging.getLogger("pushpipe_local.runtime.runtime")
_CTX = mp.get_context("spawn")
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


@dataclass
class FunctionConfig:
    spec: t.Function
    env: dict[str, str]
    timeout_s: float
    max_concurrency: int
    retry_delays_s: tuple[float, ...] = (1.0, 2.0)


@dataclass
class InvokeResult:
    ok: bool
    payload: Any = None
    error: dict | None = None
    duration_ms: float = 0.0
    request_id: str = ""


class _Worker:
    def __init__(self, cfg: FunctionConfig, log_path: Path) -> None:
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.process = _CTX.Process(
            target=worker_module.serve,
            args=(child, cfg.spec.handler, cfg.env, str(log_path)),
            daemon=True,
            name=f"lambda-{cfg.spec.name}",
        )
        self.process.start()
        child.close()
        if not self.conn.poll(120):
            self.kill()
            raise RuntimeError(f"worker for {cfg.spec.name} did not start within 120 s")
        self.conn.recv()
        self.invocations = 0

    def run(self, inv: dict, timeout_s: float) -> dict:
        self.invocations += 1
        try:
            self.conn.send(inv)
            if self.conn.poll(timeout_s + 1.0):
                return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            return {
                "ok": False,
                "error": {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": "the function's process exited",
                },
            }
        self.kill()
        return {
            "ok": False,
            "error": {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {timeout_s:.2f} seconds",
            },
        }

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(2)
        self.kill()


class FunctionPool:
    """The warm containers of one function."""

    def __init__(self, cfg: FunctionConfig, log_dir: Path, region: str) -> None:
        self.cfg = cfg
        self.region = region
        self.log_path = log_dir / f"{cfg.spec.name}.log"
        self._idle: list[_Worker] = []
        self._busy: dict[str, _Worker] = {}
        self._cond = threading.Condition()
        self._starting = 0
        self.invocations = 0
        self.errors = 0
        self.cold_starts = 0
        # invocations by the event's "action" (or its source), e.g. chain / sweep / sqs
        self.kinds: dict[str, int] = {}

    def _checkout(self) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    w = self._idle.pop()  # LIFO: the warmest container first
                    if w.alive:
                        return w
                if len(self._busy) + self._starting < self.cfg.max_concurrency:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            self.cold_starts += 1
            return _Worker(self.cfg, self.log_path)
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()

    def invoke(self, event: Any, request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        t0 = time.time()
        w = self._checkout()
        kind = (
            str(
                event.get("action")
                or event.get("Records", [{}])[0].get("eventSource", "")
                or event.get("routeKey")
                or "other"
            )
            if isinstance(event, dict)
            else "other"
        )
        with self._cond:
            self._busy[request_id] = w
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        started = time.time()
        inv = {
            "event": event,
            "request_id": request_id,
            "function_name": self.cfg.spec.name,
            "memory_mb": self.cfg.spec.memory_mb,
            "region": self.region,
            "deadline_ms": started * 1000 + self.cfg.timeout_s * 1000,
        }
        log.info(
            "%s start %s (checkout %.0f ms)",
            self.cfg.spec.name,
            request_id[:8],
            (started - t0) * 1000,
        )
        answer = w.run(inv, self.cfg.timeout_s)
        log.info(
            "%s end %s ok=%s %.0f ms",
            self.cfg.spec.name,
            request_id[:8],
            answer.get("ok"),
            (time.time() - started) * 1000,
        )
        with self._cond:
            self._busy.pop(request_id, None)
            self.invocations += 1
            if w.alive:
                self._idle.append(w)
            if not answer.get("ok"):
                self.errors += 1
            self._cond.notify_all()
        return InvokeResult(
            ok=bool(answer.get("ok")),
            payload=answer.get("result"),
            error=answer.get("error"),
            duration_ms=(time.time() - started) * 1000,
            request_id=request_id,
        )

    def prewarm(self, n: int) -> None:
        """Start ``n`` containers ahead of traffic (Lambda's provisioned concurrency)."""
        n = min(n, self.cfg.max_concurrency)
        workers: list[_Worker] = []

        def start() -> None:
            workers.append(_Worker(self.cfg, self.log_path))

        threads = [threading.Thread(target=start, daemon=True) for _ in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        with self._cond:
            self._idle.extend(workers)
            self._cond.notify_all()

    def kill_busy(self) -> str | None:
        """Kill one running invocation's container (a crash, for tests)."""
        with self._cond:
            victims = list(self._busy.items())
        if not victims:
            return None
        request_id, w = victims[0]
        w.kill()
        return request_id

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._busy) + self._starting

    def close(self) -> None:
        with self._cond:
            workers = self._idle + list(self._busy.values())
            self._idle, self._busy = [], {}
        for w in workers:
            w.close()


@dataclass
class AsyncFailure:
    function: str
    request_id: str
    event: Any
    error: dict | None
    attempts: int


@dataclass
class Runtime:
    """All function pools plus the async queue, pollers and HTTP endpoints."""

    functions: dict[str, FunctionConfig]
    log_dir: Path
    region: str = "us-east-1"
    pools: dict[str, FunctionPool] = field(default_factory=dict)
    failures: list[AsyncFailure] = field(default_factory=list)
    _pending: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    invoke_url: str = ""
    api_url: str = ""

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for cfg in self.functions.values():
            self.add_function(cfg)

    def add_function(self, cfg: FunctionConfig) -> None:
        self.functions[cfg.spec.name] = cfg
        self.pools[cfg.spec.name] = FunctionPool(cfg, self.log_dir, self.region)

    # -- invocation --------------------------------------------------------------------
    def pool(self, name: str) -> FunctionPool:
        name = name.split(":function:")[-1].split(":")[0]
        if name not in self.pools:
            raise KeyError(name)
        return self.pools[name]

    def invoke(self, name: str, event: Any) -> InvokeResult:
        return self.pool(name).invoke(event)

    def invoke_async(self, name: str, event: Any) -> str:
        pool = self.pool(name)
        request_id = str(uuid.uuid4())
        with self._lock:
            self._pending += 1
        th = threading.Thread(
            target=self._run_async,
            args=(pool, event, request_id),
            daemon=True,
            name=f"async-{pool.cfg.spec.name}",
        )
        th.start()
        return request_id

    def _run_async(self, pool: FunctionPool, event: Any, request_id: str) -> None:
        try:
            retries = pool.cfg.spec.async_retries
            result = None
            for attempt in range(retries + 1):
                if self._stop.is_set():
                    return
                result = pool.invoke(event, request_id)
                if result.ok:
                    return
                log.warning(
                    "async %s attempt %d failed: %s",
                    pool.cfg.spec.name,
                    attempt + 1,
                    (result.error or {}).get("errorMessage"),
                )
                if attempt < retries:
                    delays = pool.cfg.retry_delays_s
                    self._stop.wait(delays[min(attempt, len(delays) - 1)])
            self.failures.append(
                AsyncFailure(
                    pool.cfg.spec.name,
                    request_id,
                    event,
                    result.error if result else None,
                    retries + 1,
                )
            )
        finally:
            with self._lock:
                self._pending -= 1

    def busy(self) -> int:
        with self._lock:
            pending = self._pending
        return pending + sum(p.busy for p in self.pools.values())

    def wait_idle(self, timeout_s: float, quiet_s: float = 0.5) -> bool:
        """Wait until nothing runs or waits for quiet_s in a row (pollers may add work)."""
        end = time.time() + timeout_s
        quiet_since = None
        while time.time() < end:
            if self.busy() == 0:
                quiet_since = quiet_since or time.time()
                if time.time() - quiet_since >= quiet_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False

    # -- HTTP: Lambda Invoke API ------------------------------------------------------
    def start_invoke_api(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runtime = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                m = INVOKE_PATH.match(urlsplit(self.path).path)
                if not m:
                    return self._json(404, {"message": f"no route {self.path}"})
                name = unquote(m.group("name"))
                body = self._body()
                try:
                    event = json.loads(body) if body else {}
                except ValueError:
                    return self._json(
                        400,
                        {
                            "__type": "InvalidRequestContentException",
                            "message": "payload is not JSON",
                        },
                    )
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                try:
                    if kind == "Event":
                        rid = runtime.invoke_async(name, event)
                        return self._raw(202, b"", {"x-amzn-RequestId": rid})
                    if kind == "DryRun":
                        runtime.pool(name)
                        return self._raw(204, b"", {})
                    result = runtime.invoke(name, event)
                except KeyError:
                    return self._json(
                        404,
                        {
                            "__type": "ResourceNotFoundException",
                            "message": f"Function not found: {name}",
                        },
                        {"x-amzn-ErrorType": "ResourceNotFoundException"},
                    )
                headers = {
                    "x-amzn-RequestId": result.request_id,
                    "X-Amz-Executed-Version": "$LATEST",
                }
                if not result.ok:
                    headers["X-Amz-Function-Error"] = "Unhandled"
                    return self._json(200, result.error or {}, headers)
                return self._json(200, result.payload, headers)

            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/_local/status":
                    return self._json(200, runtime.status())
                return self._json(404, {"message": "not found"})

        self.invoke_url = self._serve(Handler, host, port)
        return self.invoke_url

    def status(self) -> dict:
        return {
            "busy": self.busy(),
            "functions": {
                n: {
                    "invocations": p.invocations,
                    "errors": p.errors,
                    "cold_starts": p.cold_starts,
                    "kinds": dict(p.kinds),
                    "busy": p.busy,
                }
                for n, p in self.pools.items()
            },
            "async_failures": len(self.failures),
        }

    # -- HTTP: API Gateway (HTTP API, payload format 2.0) -----------------------------
    def start_http_api(
        self,
        routes: tuple[t.Route, ...],
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "$default",
    ) -> str:
        runtime = self
        compiled = [(r, _route_regex(r.path)) for r in routes]

        class Handler(_QuietHandler):
            def _dispatch(self) -> None:
                parts = urlsplit(self.path)
                method = self.command.upper()
                match = None
                for route, rx in compiled:
                    m = rx.match(parts.path)
                    if m and route.method.upper() in (method, "ANY"):
                        match = (route, m)
                        break
                    if m and method == "OPTIONS":
                        match = (route, m)
                if match is None:
                    return self._json(404, {"message": "Not Found"})
                route, m = match
                body = self._body()
                try:
                    text, b64 = body.decode("utf-8"), False
                except UnicodeDecodeError:
                    text, b64 = base64.b64encode(body).decode(), True
                now = time.time()
                event = {
                    "version": "2.0",
                    "routeKey": f"{route.method.upper()} {route.path}",
                    "rawPath": parts.path,
                    "rawQueryString": parts.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "queryStringParameters": {
                        k: ",".join(v) for k, v in parse_qs(parts.query).items()
                    }
                    or None,
                    "pathParameters": {k: unquote(v) for k, v in m.groupdict().items()} or None,
                    "requestContext": {
                        "accountId": "123456789012",
                        "apiId": "local",
                        "stage": stage,
                        "domainName": self.headers.get("Host", "localhost"),
                        "requestId": str(uuid.uuid4()),
                        "routeKey": f"{route.method.upper()} {route.path}",
                        "http": {
                            "method": method,
                            "path": parts.path,
                            "protocol": "HTTP/1.1",
                            "sourceIp": self.client_address[0],
                            "userAgent": self.headers.get("User-Agent", ""),
                        },
                        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                        "timeEpoch": int(now * 1000),
                    },
                    "body": text if body else None,
                    "isBase64Encoded": b64,
                    "stageVariables": None,
                }
                try:
                    result = runtime.invoke(route.function, event)
                except KeyError:
                    return self._json(500, {"message": f"no function {route.function}"})
                if not result.ok:
                    log.error("%s failed: %s", route.function, result.error)
                    return self._json(500, {"message": "Internal Server Error"})
                self._proxy_response(result.payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

            def _proxy_response(self, payload: Any) -> None:
                if not isinstance(payload, dict) or "statusCode" not in payload:
                    # HTTP API 2.0 infers a 200 JSON response from a plain return value
                    return self._json(200, payload)
                body = payload.get("body") or ""
                data = base64.b64decode(body) if payload.get("isBase64Encoded") else body.encode()
                headers = dict(payload.get("headers") or {})
                for k, vs in (payload.get("multiValueHeaders") or {}).items():
                    headers[k] = ",".join(vs)
                self._raw(
                    int(payload["statusCode"]), data, headers, cookies=payload.get("cookies") or []
                )

        self.api_url = self._serve(Handler, host, port)
        return self.api_url

    # -- pollers ------------------------------------------------------------------------
    def start_thread(self, target: Callable[[], None], name: str) -> None:
        th = threading.Thread(target=target, daemon=True, name=name)
        th.start()
        self._threads.append(th)

    def poll_sqs(self, sqs: Any, queue_url: str, function: str, batch_size: int) -> None:
        """Lambda's SQS event source mapping: receive, invoke, delete what succeeded."""

        def loop() -> None:
            arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            while not self._stop.is_set():
                try:
                    got = sqs.receive_message(
                        QueueUrl=queue_url,
                        MaxNumberOfMessages=min(batch_size, 10),
                        WaitTimeSeconds=1,
                        AttributeNames=["All"],
                    )
                except Exception as exc:  # the cloud is stopping, or moto hiccupped
                    if self._stop.is_set():
                        return
                    log.warning("SQS receive failed: %s", exc)
                    self._stop.wait(0.5)
                    continue
                messages = got.get("Messages", [])
                if not messages:
                    continue
                with self._lock:
                    self._pending += 1
                try:
                    self._deliver_sqs(sqs, queue_url, arn, function, messages)
                finally:
                    with self._lock:
                        self._pending -= 1

        self.start_thread(loop, f"sqs-{function}")

    def _deliver_sqs(
        self, sqs: Any, queue_url: str, arn: str, function: str, messages: list[dict]
    ) -> None:
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": self.region,
                }
                for m in messages
            ]
        }
        result = self.invoke(function, event)
        if not result.ok:
            log.warning(
                "SQS batch to %s failed; messages return after the visibility timeout: %s",
                function,
                (result.error or {}).get("errorMessage"),
            )
            return
        failed = (
            {f["itemIdentifier"] for f in (result.payload or {}).get("batchItemFailures", [])}
            if isinstance(result.payload, dict)
            else set()
        )
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def poll_kinesis(
        self, kinesis: Any, stream: str, function: str, batch_size: int, window_s: float
    ) -> None:
        """Lambda's Kinesis event source mapping, one loop per shard, from LATEST at start.

        A failed batch is retried; ``batchItemFailures`` resumes from the failed record."""

        def shard_loop(shard_id: str, arn: str) -> None:
            it = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            buffered: list[dict] = []
            while not self._stop.is_set():
                try:
                    got = kinesis.get_records(ShardIterator=it, Limit=batch_size)
                except Exception as exc:
                    if self._stop.is_set():
                        return
                    log.warning("Kinesis get_records failed: %s", exc)
                    self._stop.wait(0.5)
                    continue
                it = got["NextShardIterator"]
                buffered.extend(got.get("Records", []))
                if not buffered:
                    self._stop.wait(min(window_s, 0.2))
                    continue
                with self._lock:
                    self._pending += 1
                try:
                    while buffered and not self._stop.is_set():
                        batch, rest = buffered[:batch_size], buffered[batch_size:]
                        retry_from = self._deliver_kinesis(function, shard_id, arn, batch)
                        if retry_from is None:
                            buffered = rest
                        else:
                            buffered = batch[retry_from:] + rest
                            self._stop.wait(0.5)
                finally:
                    with self._lock:
                        self._pending -= 1

        desc = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
        for shard in desc["Shards"]:
            self.start_thread(
                lambda s=shard["ShardId"], a=desc["StreamARN"]: shard_loop(s, a),
                f"kinesis-{stream}-{shard['ShardId']}",
            )

    def _deliver_kinesis(
        self, function: str, shard_id: str, arn: str, records: list[dict]
    ) -> int | None:
        event = {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"],
                        "data": base64.b64encode(r["Data"]).decode(),
                        "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard_id}:{r['SequenceNumber']}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::123456789012:role/local",
                    "awsRegion": self.region,
                    "eventSourceARN": arn,
                }
                for r in records
            ]
        }
        result = self.invoke(function, event)
        if not result.ok:
            log.warning(
                "Kinesis batch to %s failed, retrying: %s",
                function,
                (result.error or {}).get("errorMessage"),
            )
            return 0
        failures = (
            (result.payload or {}).get("batchItemFailures", [])
            if isinstance(result.payload, dict)
            else []
        )
        if not failures:
            return None
        seqs = [r["SequenceNumber"] for r in records]
        first = min(
            seqs.index(f["itemIdentifier"]) for f in failures if f["itemIdentifier"] in seqs
        )
        return first

    def schedule(self, function: str, every_s: float, payload: dict) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                self.invoke_async(function, payload)

        self.start_thread(loop, f"schedule-{function}")

    def pump_firehose(self, kinesis: Any, firehose: Any, stream: str, delivery: str) -> None:
        """A Firehose delivery stream whose source is a Kinesis stream (moto cannot)."""

        def shard_loop(shard_id: str) -> None:
            it = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while not self._stop.is_set():
                try:
                    got = kinesis.get_records(ShardIterator=it, Limit=500)
                    it = got["NextShardIterator"]
                    records = got.get("Records", [])
                    if records:
                        firehose.put_record_batch(
                            DeliveryStreamName=delivery,
                            Records=[
                                {
                                    "Data": r["Data"]
                                    if r["Data"].endswith(b"\n")
                                    else r["Data"] + b"\n"
                                }
                                for r in records
                            ],
                        )
                    else:
                        self._stop.wait(0.2)
                except Exception as exc:
                    if self._stop.is_set():
                        return
                    log.warning("Firehose pump %s failed: %s", delivery, exc)
                    self._stop.wait(0.5)

        desc = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
        for shard in desc["Shards"]:
            self.start_thread(lambda s=shard["ShardId"]: shard_loop(s), f"pump-{delivery}")

    # -- plumbing -----------------------------------------------------------------------
    def _serve(self, handler: type[BaseHTTPRequestHandler], host: str, port: int) -> str:
        server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        self._servers.append(server)
        th = threading.Thread(target=server.serve_forever, daemon=True, name="http")
        th.start()
        self._threads.append(th)
        return f"http://{host}:{server.server_address[1]}"

    def stop(self) -> None:
        self._stop.set()
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for p in self.pools.values():
            p.close()


def _route_regex(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(path))
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{pattern}$")


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        self._raw(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _raw(self, status: int, data: bytes, headers: dict, cookies: list[str] = ()) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, str(v))
        for c in cookies:
            self.send_header("Set-Cookie", c)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
