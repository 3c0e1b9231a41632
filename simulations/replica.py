"""A vLLM replica as continuous batching, and the model queue in front of its replicas.

One engine step takes `a + b * decoding + c * prefill_tokens` seconds: every decoding request
gains one output token per step, and a step also prefills up to `max_batched_tokens` prompt
tokens (chunked prefill, FIFO over the admitted requests). A request is admitted while the
replica has fewer than `max_num_seqs` requests and its KV cache holds the prompts and tokens
generated so far. ServedRequests wait in one FIFO per model at a router in front of the replicas
(llm-d's and AIBrix's gateways queue per model; it is also the best case for every policy
alike), and go to a replica as soon as one can admit them.

Time inside a tick is event-driven: the engine jumps from one event to the next (a request
finishes, a prefill completes, a request arrives to a free slot, the tick ends), advancing a
per-replica step counter; each decoding request finishes when the counter reaches its mark.
No event is lost to the tick size and a tick costs O(events * log n).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReplicaProfile:
    """How fast one replica serves. Every report prints these."""

    name: str
    step_base_s: float  # a: fixed cost of one engine step
    step_per_seq_s: float  # b: added per decoding request in the step
    prefill_per_token_s: float  # c: per prompt token prefilled
    max_num_seqs: int  # vLLM's cap on running requests
    kv_capacity_tokens: int  # tokens the KV cache holds across running requests
    max_batched_tokens: int  # vLLM's max_num_batched_tokens: prompt tokens per step at most
    max_model_len: int  # longer requests (prompt + output) are refused, as vLLM answers 400
    gpus: int = 1
    source: str = ""

    def step_s(self, decoding: int, prefill_tokens: float = 0.0) -> float:
        return self.step_base_s + self.step_per_seq_s * decoding + self.prefill_per_token_s * prefill_tokens

    def describe(self) -> str:
        return (
            f"{self.name}: step = {self.step_base_s * 1e3:.2f} ms + {self.step_per_seq_s * 1e3:.3f} ms x batch "
            f"+ {self.prefill_per_token_s * 1e6:.1f} us x prompt tokens; max_num_seqs {self.max_num_seqs}, "
            f"KV {self.kv_capacity_tokens:,} tokens, {self.gpus} GPU ({self.source})"
        )


class ServedRequests:
    """One model's requests (from a simulations.workload.Requests) and what happened to each
    in one simulation run: when it was admitted, got its first token, finished, and whether
    it arrived while no replica was ready (it met a cold start)."""

    @classmethod
    def of(cls, workload) -> ServedRequests:
        return cls(workload.arrival_s, workload.prompt_tokens, workload.output_tokens)

    def __init__(self, arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> None:
        order = np.argsort(arrival_s, kind="stable")
        self.arrival_s = np.asarray(arrival_s, dtype=float)[order]
        self.prompt = np.asarray(prompt_tokens, dtype=float)[order]
        self.output = np.maximum(np.asarray(output_tokens, dtype=float)[order], 1.0)
        n = len(self.arrival_s)
        self.admitted_s = np.full(n, np.nan)
        self.first_token_s = np.full(n, np.nan)
        self.finished_s = np.full(n, np.nan)
        self.cold = np.zeros(n, dtype=bool)  # arrived while no replica of the model was ready
        self.rejected = np.zeros(n, dtype=bool)  # longer than max_model_len: refused on arrival
        self.completed = 0  # vLLM's request_success_total

    def __len__(self) -> int:
        return len(self.arrival_s)


class ModelQueue:
    """The router's FIFO for one model: arrivals enter at their time, replicas take from the head.
    A request longer than the model's max_model_len is refused on arrival, as vLLM refuses it
    (HTTP 400): no replica count would serve it, and queued it would block the line forever."""

    def __init__(self, requests: ServedRequests, *, max_model_len: float = np.inf) -> None:
        self.requests = requests
        too_long = requests.prompt + requests.output > max_model_len
        requests.rejected[:] = too_long
        self._next = 0  # first request that has not arrived yet
        self.waiting: deque[int] = deque()

    def arrive_until(self, now: float, *, cold: bool) -> None:
        arrival = self.requests.arrival_s
        end = int(np.searchsorted(arrival, now, side="right"))
        if end > self._next:
            rejected = self.requests.rejected[self._next : end]
            if cold:
                self.requests.cold[self._next : end] = ~rejected
            self.waiting.extend(i for i in range(self._next, end) if not self.requests.rejected[i])
            self._next = end

    def next_arrival_s(self) -> float:
        return float(self.requests.arrival_s[self._next]) if self._next < len(self.requests) else np.inf

    def next_arrival_after(self, now: float) -> float:
        """When the head of the line can next be admitted: `now` if it is already here, its
        arrival if another replica pulled it into the line ahead of time, else the next arrival.
        (Replicas advance one after another over the same tick, so a line can hold requests
        that arrive later than the time a replica has reached.)"""
        if self.waiting:
            return max(float(self.requests.arrival_s[self.waiting[0]]), now)
        return self.next_arrival_s()

    def requeue_front(self, ids: list[int]) -> None:
        self.waiting.extendleft(reversed(ids))


class Replica:
    __slots__ = (
        "profile", "steps", "decoding", "prefill", "prompt_decoding", "start_marks", "prompt_prefill",
        "busy_s", "ready_at", "draining_since", "_ids",
    )

    def __init__(self, profile: ReplicaProfile, *, ready_at: float = 0.0) -> None:
        self.profile = profile
        self.steps = 0.0  # engine steps so far (fractional: the fluid limit of many steps)
        self.decoding: list[tuple[float, int]] = []  # heap of (finish mark in steps, request id)
        self.prefill: deque[list] = deque()  # [request id, prompt tokens left, prompt tokens]
        self.prompt_decoding = 0.0  # sums that give the KV use in O(1)
        self.start_marks = 0.0
        self.prompt_prefill = 0.0
        self.busy_s = 0.0
        self.ready_at = ready_at
        self.draining_since: float | None = None
        self._ids: dict[int, tuple[float, float]] = {}  # decoding id -> (prompt, start mark)

    @property
    def running(self) -> int:
        return len(self.decoding) + len(self.prefill)

    @property
    def kv_used(self) -> float:
        return self.prompt_prefill + self.prompt_decoding + len(self.decoding) * self.steps - self.start_marks

    def kv_usage(self) -> float:
        # The running sums behind kv_used drift by ~1e-15 as requests come and go.
        return min(max(self.kv_used / self.profile.kv_capacity_tokens, 0.0), 1.0)

    def can_admit(self, prompt: float, output: float) -> bool:
        """vLLM schedules a waiting request when its prefill can start and its prompt's KV
        blocks fit (decoding then grows into the rest). Until then it counts in
        num_requests_waiting, which is this model's line at the router: one prefill at a time
        per replica keeps the line where vLLM shows it, and lets the next free replica take
        the head (a request is not stuck behind one engine's backlog)."""
        return (
            not self.prefill
            and self.running < self.profile.max_num_seqs
            and self.kv_used + prompt <= self.profile.kv_capacity_tokens
        )

    def advance(self, start: float, end: float, queue: ModelQueue, *, admit: bool = True) -> None:
        """Serve from `start` to `end`, taking new requests from `queue` unless draining."""
        profile, requests = self.profile, queue.requests
        if not admit:
            queue = None  # serve what runs, take nothing new
        now = start
        while now < end:
            if queue is not None:
                self._admit(queue, now)
            decoding = len(self.decoding)
            if not decoding and not self.prefill:
                next_arrival = queue.next_arrival_after(now) if queue is not None else np.inf
                now = min(end, next_arrival) if next_arrival > now else end
                continue
            chunk = min(self.prefill[0][1], profile.max_batched_tokens - decoding) if self.prefill else 0.0
            step_s = profile.step_s(decoding, chunk)
            k = (end - now) / step_s
            event = "tick"
            if decoding and self.decoding[0][0] - self.steps < k:
                k, event = max(self.decoding[0][0] - self.steps, 0.0), "finish"
            if chunk and self.prefill[0][1] / chunk < k:
                k, event = self.prefill[0][1] / chunk, "prefilled"
            if queue is not None and not self.prefill and self.running < profile.max_num_seqs:
                next_arrival = queue.next_arrival_after(now)
                if now < next_arrival and (next_arrival - now) / step_s < k:
                    k, event = (next_arrival - now) / step_s, "arrival"
            now += k * step_s
            self.busy_s += k * step_s
            self.steps += k
            if chunk:
                self.prefill[0][1] -= k * chunk
            # Whatever event stopped the advance, settle everything it completed: another
            # event can land on the same instant as a finish or the end of a prefill.
            while self.decoding and self.decoding[0][0] <= self.steps + 1e-9:
                self._finish(heapq.heappop(self.decoding)[1], now, requests)
            if self.prefill and self.prefill[0][1] <= 1e-9:
                self._prefilled(now, requests)
            if event == "tick":
                now = end

    def _prefilled(self, now: float, requests: ServedRequests) -> None:
        """The head's prompt is in the cache: its first token comes with this step."""
        request_id, _, prompt = self.prefill.popleft()
        self.prompt_prefill -= prompt
        requests.first_token_s[request_id] = now
        remaining = requests.output[request_id] - 1.0
        if remaining <= 0:
            self._done(request_id, now, requests)
            return
        heapq.heappush(self.decoding, (self.steps + remaining, request_id))
        self._ids[request_id] = (prompt, self.steps)
        self.prompt_decoding += prompt
        self.start_marks += self.steps

    def _admit(self, queue: ModelQueue, now: float) -> None:
        queue.arrive_until(now, cold=False)
        requests = queue.requests
        while queue.waiting:
            request_id = queue.waiting[0]
            prompt = requests.prompt[request_id]
            if requests.arrival_s[request_id] > now or not self.can_admit(prompt, requests.output[request_id]):
                break
            queue.waiting.popleft()
            requests.admitted_s[request_id] = now
            self.prefill.append([request_id, max(prompt, 1.0), prompt])
            self.prompt_prefill += prompt

    def _finish(self, request_id: int, now: float, requests: ServedRequests) -> None:
        prompt, start_mark = self._ids.pop(request_id)
        self.prompt_decoding -= prompt
        self.start_marks -= start_mark
        self._done(request_id, now, requests)

    @staticmethod
    def _done(request_id: int, now: float, requests: ServedRequests) -> None:
        requests.finished_s[request_id] = now
        requests.completed += 1

    def evict(self) -> list[int]:
        """Stop now: the ids of the requests in flight, to be served again elsewhere."""
        ids = [request_id for _, request_id in self.decoding] + [entry[0] for entry in self.prefill]
        self.decoding.clear()
        self.prefill.clear()
        self._ids.clear()
        self.prompt_decoding = self.start_marks = self.prompt_prefill = 0.0
        return ids
