"""Events off the tick's path: a bounded queue that one background thread posts from.

Why: an Event is for `kubectl describe`, not for the scaling, and posting it in the tick made
the tick wait on a second request per write. At 1,000 models a first tick changes about 120
counts; with the Events posted inline that was 240 requests one after another, half of them
Events. client-go's EventRecorder does the same as this module: the controller enqueues, a
broadcaster goroutine sends, and a full queue (1,000 events, `maxQueuedEvents` in
k8s.io/client-go/tools/record/event.go) drops rather than blocks.

Contract:
- `send(body, model=...)` never blocks and never raises: it queues the Event, or, when
  `capacity` Events already wait, drops it, logs a warning and reports it to `on_dropped`.
- one thread posts them in the order sent, so a model's Events keep their order. A failed post
  is logged and not retried (a scaling is never undone or failed for its Event).
- `stop(timeout_s)` sends what is queued for at most `timeout_s` (the SIGTERM path: the
  daemon's grace period is 60 s), then drops and counts the rest.
- inside `with held():` Events are queued but not posted; the daemon holds them for the span
  of a tick, so that they go out after its writes rather than between them. Why: on the first
  tick at 1,000 models the 117 Event POSTs went to the API server beside the 117 PATCHes and
  slowed them: kmock took 25 ms to answer a POST against 3 ms for a PATCH of /scale. Held,
  they took the tick's writes from 1.1-1.3 s to 0.8-1.05 s (simulations/bench_scale.py). A scaling
  matters now; its Event, for `kubectl describe`, can come a second later. `flush` and `stop`
  are for outside a hold.
The thread starts with the first Event, so a sender that never sends costs no thread.

What an Event says: its `reason` is the write (ScaledUp, ScaledDown, Pinned, BoundsChanged), and
its message the decision's reasons in order, each led by its code, one of
policies.reasons.ReasonCode (listed with their meanings in docs/reasons.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import structlog
from kubernetes import client as k8s

from autoscaler.kube_errors import Failed, Forbidden, Rule, Unreachable, translated
from autoscaler.settings import ApiSettings, EventSettings

log = structlog.get_logger(__name__)


class EventSender:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        capacity: int = EventSettings().events_queue_size,
        api: ApiSettings = ApiSettings(),
        on_dropped: Callable[[str, int], None] = lambda reason, count: None,
    ) -> None:
        """`on_dropped(reason, count)`: reason "queue_full" or "shutdown"."""
        if capacity < 1:
            raise ValueError(f"capacity: {capacity} is not allowed; an Event queue holds at least 1")
        self._core = k8s.CoreV1Api(api_client)
        self._capacity = capacity
        # A hung API server holds up Events, never a tick: they are posted from their own thread.
        self._request_timeout_s = api.request_timeout_s
        self._on_dropped = on_dropped
        self._changed = threading.Condition()
        self._queue: deque[tuple[Mapping, str]] = deque()
        self._posting = False
        self._closed = False
        self._holds = 0  # posting waits while above 0
        self._thread: threading.Thread | None = None

    def send(self, body: Mapping, *, model: str) -> bool:
        """Queue an Event for `model`; False when it was dropped (queue full, or stopped)."""
        with self._changed:
            dropped = "shutdown" if self._closed else "queue_full" if len(self._queue) >= self._capacity else None
            if dropped is None:
                self._queue.append((body, model))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
                    self._thread.start()
                self._changed.notify_all()
        if dropped is not None:
            why = "the queue is full" if dropped == "queue_full" else "the sender has stopped"
            log.warning(f"Event dropped: {why}", model=model, reason=body.get("reason"), capacity=self._capacity)
            self._on_dropped(dropped, 1)
        return dropped is None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Queue without posting until the block ends (see the module's docstring)."""
        with self._changed:
            self._holds += 1
        try:
            yield
        finally:
            with self._changed:
                self._holds -= 1
                self._changed.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued Event has been posted; False if `timeout_s` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue and not self._posting, timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Post what is queued within `timeout_s`; drop and count what is left."""
        # A shutdown deadline, not a decision's time: monotonic, outside the Clock.
        deadline = time.monotonic() + timeout_s
        self.flush(timeout_s)
        with self._changed:
            self._closed = True
            left = len(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        if left:
            log.warning("Events not sent before shutdown", dropped=left, timeout_s=timeout_s)
            self._on_dropped("shutdown", left)
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.1))

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: (self._queue and not self._holds) or self._closed)
                if not self._queue:
                    return
                body, model = self._queue.popleft()
                self._posting = True
            try:
                self._post(body, model=model)
            finally:
                with self._changed:
                    self._posting = False
                    self._changed.notify_all()

    def _post(self, body: Mapping, *, model: str) -> None:
        namespace = body["metadata"]["namespace"]
        try:
            with translated(Rule("", "events", ("create",), namespace)):
                self._core.create_namespaced_event(namespace, body, _request_timeout=self._request_timeout_s)
        except Failed as err:
            hint = err.hint if isinstance(err, Forbidden) else ""
            log.warning("could not record an Event for a scaling", model=model, status=err.status, hint=hint)
        except Unreachable as err:
            log.warning("could not record an Event for a scaling", model=model, error=str(err))
        except Exception:  # noqa: BLE001  the thread must outlive a bug in one post, or every later Event is lost
            log.exception("could not record an Event for a scaling", model=model)
