"""Config reload: a changed config file applies at the next tick; an invalid one is rejected,
its errors logged, and the running config kept. Kubernetes updates a mounted ConfigMap by
swapping a symlink, so the file's content is compared, not its modification time.

The policy state of every model that stays (idle-since times, stabilization history, measured
service rates) carries over, so a reload neither scales an idle-but-young model to zero early
nor forgets what it measured. Changing tick_interval_s takes effect at the next restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import structlog

from autoscaler.config import Config, ConfigError, load_config
from autoscaler.controller import Controller, Outcome

log = structlog.get_logger(__name__)


class ReloadingController:
    def __init__(
        self,
        path: Path,
        build: Callable[[Config], Controller],
        *,
        on_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = Path(path)
        self._build = build
        self._on_rejected = on_rejected
        self._digest = _digest(self._path)
        self.config = load_config(self._path)
        self.controller = build(self.config)

    def tick(self, *, now: float) -> list[Outcome]:
        self._reload_if_changed()
        return self.controller.tick(now=now)

    def _reload_if_changed(self) -> None:
        digest = _digest(self._path)
        if digest is None or digest == self._digest:
            return
        self._digest = digest
        try:
            config = load_config(self._path)
        except ConfigError as err:
            log.error("new config rejected; keeping the running one", path=str(self._path), errors=str(err))
            self._on_rejected()
            return
        controller = self._build(config)
        kept = {m.name for m in config.models}
        controller.states = {name: state for name, state in self.controller.states.items() if name in kept}
        self.controller, self.config = controller, config
        log.info("config reloaded", path=str(self._path), models=len(config.models))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # mid-swap or gone: try again next tick
