"""Small async stand-ins for node handles, and an ``IngressState`` over them (no Ray)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import mongomock

from configs.ingress import IngressConfig
from configs.settings import ALL_SCOPES, CLIENT_SCOPE
from deployments.ingress.auth import ApiKeys
from deployments.ingress.state import IngressState, NodeHandle
from models.answers import Answer, ModelRef
from storage.audit_log import AuditLog, DecisionRepository, StoreInfo

TEST_KEY = "unit-test-key"  # every scope
CLIENT_KEY = "unit-client-key"  # the client scope only


class FakeResponse:
    """What ``method.remote(...)`` returns: awaitable once, and cancellable."""

    def __init__(self, outcome: Callable[[], Any]) -> None:
        self._outcome = outcome
        self.cancelled = False

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._result().__await__()

    async def _result(self) -> object:
        outcome = self._outcome()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel(self) -> None:
        self.cancelled = True


class FakeMethod:
    """A method handle (``handle.predict``) answering ``outcome``; counts its calls.

    ``outcome`` is a value, an exception to raise, or a function of the call's arguments
    returning either (or a coroutine of either).
    """

    def __init__(self, outcome: object, deployment_name: str = "TextModeration") -> None:
        self.outcome = outcome
        self.deployment_name = deployment_name
        self.calls: list[tuple[Any, ...]] = []
        self.last: FakeResponse | None = None

    def remote(self, *args: Any) -> FakeResponse:
        self.calls.append(args)
        if callable(self.outcome):
            response = FakeResponse(lambda: self.outcome(*args))  # type: ignore[operator]
        else:
            response = FakeResponse(lambda: self.outcome)
        self.last = response
        return response


class FakeNode:
    """A node handle whose methods are ``FakeMethod``s, by name."""

    def __init__(self, deployment_name: str, **methods: object) -> None:
        self.deployment_name = deployment_name
        self.methods = {
            name: FakeMethod(outcome, deployment_name) for name, outcome in methods.items()
        }

    def __getattr__(self, name: str) -> FakeMethod:
        try:
            return self.__dict__["methods"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None


class _LocalResponse:
    """What ``method.remote(...)`` returns for an in-process node: awaitable, cancellable."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._task = asyncio.ensure_future(self._run(call))

    @staticmethod
    async def _run(call: Callable[[], Any]) -> Any:
        outcome = call()
        return await outcome if inspect.isawaitable(outcome) else outcome

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._task.__await__()

    def cancel(self) -> None:
        self._task.cancel()


class _LocalMethod:
    def __init__(self, handle: LocalNode, name: str) -> None:
        self.handle = handle
        self.name = name
        self.deployment_name = handle.deployment_name

    def remote(self, *args: Any) -> _LocalResponse:
        return _LocalResponse(lambda: getattr(self.handle.instance(), self.name)(*args))


class LocalNode:
    """A node class run in this process behind a handle-like object; built on first call,
    inside the app's event loop (the Trends node starts its loop task there)."""

    def __init__(self, deployment_name: str, build: Callable[[], Any]) -> None:
        self.deployment_name = deployment_name
        self._build = build
        self._instance: Any = None

    def instance(self) -> Any:
        """The node object, built on first use."""
        if self._instance is None:
            self._instance = self._build()
        return self._instance

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _LocalMethod(self, name)


ResultT = TypeVar("ResultT")


class FakeInfo:
    """A node's ``info()`` answer: its part of /health."""

    def __init__(self, **document: Any) -> None:
        self.document = document

    def as_json(self) -> dict[str, Any]:
        return dict(self.document)


def answer(result: ResultT, version: str = "1") -> Answer[ResultT]:
    """A model node's answer: the result and the (fake) model that computed it."""
    return Answer(result, ModelRef(name="fake", version=version, device="cpu"))


def fake_state(
    nodes: Mapping[str, NodeHandle] | None = None,
    config: Mapping[str, Any] | None = None,
    keys: tuple[str, ...] = (TEST_KEY,),
) -> IngressState:
    """A replica's state over fake nodes, an in-memory audit store and ``config``.

    ``keys`` get every scope; ``CLIENT_KEY`` is always accepted, with the client scope only.
    """
    ingress_config = IngressConfig.model_validate(config or {})
    repository = DecisionRepository(mongomock.MongoClient(tz_aware=True)["unit"])
    state = IngressState(
        nodes=dict(nodes or {}),
        api_keys=ApiKeys.of({CLIENT_KEY: {CLIENT_SCOPE}, **dict.fromkeys(keys, ALL_SCOPES)}),
        audit_log=AuditLog(ingress_config.audit, repository, StoreInfo("embedded (unit)", False)),
    )
    state.apply(ingress_config)
    return state
