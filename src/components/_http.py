"""A naturally async feature generator: per-key lookups against a JSON HTTP endpoint."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import quote

import anyio
import attrs
import polars as pl

import concur

from ._common import (
    as_names,
    as_tuple,
    check_int,
    check_name,
    check_number,
    field_check,
    is_number,
    prefixed,
)
from ._interfaces import FeatureGenerator

if TYPE_CHECKING:
    import httpx

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["HttpLookupFeatures"]

TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried."""

_OWNER: Final = "HttpLookupFeatures"


def _check_url(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(
            f"HttpLookupFeatures: url must be an http:// or https:// URL, got {value!r}"
        )


@final
@attrs.frozen(kw_only=True)
class HttpLookupFeatures(FeatureGenerator):
    """Enrich rows by looking up a key column against a JSON HTTP endpoint.

    Each distinct value of *key* is fetched once with ``GET``: the URL is *url* with
    ``{key}`` replaced by the value, or, if *url* has no ``{key}``, *url* with the query
    parameter ``key=<value>``. The response must be a JSON object; its numeric fields
    (or the *fields* named) become feature columns ``f"{name}__{field}"``, joined back to
    the rows (null for a key answered with 404 or lacking the field).

    At most *max_concurrency* requests are in flight at once; a request that fails with a
    transport error, a timeout or a transient status (408, 425, 429, 500, 502, 503, 504) is
    retried up to *retries* times with exponential backoff starting at *backoff* seconds.
    Each attempt is bounded by *timeout* seconds, and each key's lookup, its retries
    included, by the ambient per-call timeout of an enclosing :func:`concur.scope` (the
    lookups run through :func:`concur.map_async`).

    Attributes:
        url: the endpoint (required).
        key: the column whose values are looked up.
        fields: the JSON fields to keep; None keeps every numeric field.
        name: the prefix of the output columns.
        max_concurrency: the most requests in flight at once.
        retries: how many times a transient failure is retried.
        timeout: seconds bounding each attempt.
        backoff: the first retry's delay in seconds; it doubles each time.
        headers: extra request headers, as ``(name, value)`` pairs.
    """

    url: str = attrs.field(validator=_check_url)
    key: str = "entity"
    fields: tuple[str, ...] | None = attrs.field(default=None, converter=as_names)
    name: str = "http"
    max_concurrency: int = attrs.field(default=16, validator=field_check(check_int, _OWNER))
    retries: int = attrs.field(default=3, validator=field_check(check_int, _OWNER, minimum=0))
    timeout: float = attrs.field(
        default=10.0, validator=field_check(check_number, _OWNER, strict=True)
    )
    backoff: float = attrs.field(default=0.05, validator=field_check(check_number, _OWNER))
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=as_tuple)

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "HttpLookupFeatures")

    def url_for(self, value: object) -> httpx.URL:
        """The URL that looks up one key value."""
        import httpx  # the "cli" extra: imported when used, so components imports without it

        text = str(value)
        if "{key}" in self.url:
            return httpx.URL(self.url.replace("{key}", quote(text, safe="")))
        return httpx.URL(self.url, params={"key": text})

    @override
    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Look up every distinct key of *frame* and return the fields, row-aligned.

        The lookups run through :func:`concur.map_async` on the event loop, at most
        *max_concurrency* at once, so they follow its error rule (the first failure
        cancels the others and propagates bare; two or more at once, as a group) and each
        is bounded by the ambient per-call timeout, if any (a key's lookup, retries
        included, then fails with ``TimeoutError``, not retried). The frame work (distinct
        keys, the join back to the rows) runs in a worker thread.

        Cancellation: the requests in flight are cancelled and the HTTP client is closed
        before the cancellation propagates.

        Raises:
            ValueError: the *key* column is missing, or a response is not a JSON object.
            httpx.HTTPStatusError: a non-transient error status (other than 404), or a
                transient one after the last retry.
            httpx.TransportError: a transport error after the last retry.
            TimeoutError: the last attempt timed out, or a lookup outlived the ambient
                per-call timeout.
            ExceptionGroup: two or more lookups failed at once.
        """
        import httpx

        if self.key not in frame.columns:
            raise ValueError(f"HttpLookupFeatures: key column {self.key!r} is not in the frame")
        keys: list[Any] = await concur.to_thread(_distinct, frame.get_column(self.key))
        keys = [value for value in keys if value is not None]  # a null key has no features
        async with httpx.AsyncClient(
            headers=list(self.headers),
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
        ) as client:
            records = await concur.map_async(
                functools.partial(self._fetch, client), keys, limit=self.max_concurrency
            )
        found = {
            value: record for value, record in zip(keys, records, strict=True) if record is not None
        }
        # per-key work is cheap next to the request each key cost; the join runs in a thread
        fields = self.fields if self.fields is not None else _numeric_fields(found.values())
        values = tuple(
            tuple(_number(found.get(value, {}).get(field)) for value in keys) for field in fields
        )
        column = frame.get_column(self.key)
        return await concur.to_thread(self._join, column, tuple(keys), fields, values)

    async def _fetch(self, client: httpx.AsyncClient, value: object) -> Mapping[str, Any] | None:
        import httpx

        url = self.url_for(value)
        attempt = 0
        while True:
            try:
                with anyio.fail_after(self.timeout):
                    response = await client.get(url)
                if response.status_code == 404:
                    return None
                if response.status_code in TRANSIENT_STATUS and attempt < self.retries:
                    raise _Transient
                response.raise_for_status()
                payload: object = response.json()
                if not isinstance(payload, dict):
                    raise ValueError(
                        f"HttpLookupFeatures: {url} answered {type(payload).__name__}, "
                        "not a JSON object"
                    )
                return payload  # pyright: ignore[reportUnknownVariableType]
            except (_Transient, httpx.TransportError, TimeoutError):
                if attempt >= self.retries:
                    raise
            attempt += 1
            await anyio.sleep(self.backoff * 2 ** (attempt - 1))

    def _join(
        self,
        column: pl.Series,
        keys: tuple[Any, ...],
        fields: tuple[str, ...],
        values: tuple[tuple[float | None, ...], ...],
    ) -> pl.DataFrame:
        schema: dict[str, Any] = {self.key: column.dtype}
        data: dict[str, Any] = {self.key: keys}
        for field, field_values in zip(fields, values, strict=True):
            schema[prefixed(self.name, field)] = pl.Float64
            data[prefixed(self.name, field)] = field_values
        table = pl.DataFrame(data, schema=schema)
        joined = column.to_frame().join(
            table, on=self.key, how="left", maintain_order="left", nulls_equal=True
        )
        return joined.drop(self.key)


class _Transient(Exception):
    """A transient status to retry."""


def _distinct(column: pl.Series) -> list[Any]:
    return column.unique(maintain_order=True).to_list()


def _number(value: object) -> float | None:
    if not is_number(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _numeric_fields(records: Any) -> tuple[str, ...]:
    fields: dict[str, None] = {}
    for record in records:
        for field, value in record.items():
            if is_number(value):
                fields.setdefault(str(field), None)
    return tuple(fields)
