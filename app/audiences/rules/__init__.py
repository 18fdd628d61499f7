"""The audience rule language: parse (fail closed), compile to SQL, evaluate in Python.

This docstring is the reference for API users.

Shape
-----
A rule is a JSON object, one of:

- ``{"everyone": true}`` -- every device. Allowed only as the whole rule, spelled exactly so.
  It is the *only* way to target everyone: an empty object, an empty list, an unknown key or
  a malformed node is a validation error, never "everyone".
- ``{"all": [rule, ...]}`` -- every sub-rule matches (non-empty list).
- ``{"any": [rule, ...]}`` -- at least one sub-rule matches (non-empty list).
- ``{"not": rule}`` -- the sub-rule does not match.
- ``{"field": F, "op": O, "value": V}`` -- a condition on one device field.

Fields and operators
--------------------
==================  ==============================================  ===========================
field               operators                                       value
==================  ==============================================  ===========================
platform            eq, ne / in                                     "ios" or "android" / list
locale              eq, ne, starts_with / in                        language tag ("pl", "pl-PL")
timezone            eq, ne / in                                     IANA zone ("Europe/Warsaw")
app_version         eq, ne, lt, lte, gt, gte / in                   version ("5.12.1")
tags                contains / contains_any, contains_all,          tag / list of tags
                    contains_none
attributes.<key>    eq, ne, lt, lte, gt, gte / in / exists          string, number or boolean /
                                                                    list of them / true, false
last_seen           within_days, not_within_days                    whole days, 1..3650
user_id             eq / in                                         user id / list of them
is_test_device      eq                                              true or false
device_id           in                                              list of device ids (UUIDs)
==================  ==============================================  ===========================

``in`` and the ``contains_*`` list operators take a non-empty list of at most 10,000 items.

- ``locale`` compares case-insensitively with ``_`` read as ``-`` (``"pl_pl"`` equals
  ``"pl-PL"``). ``starts_with`` matches whole subtags: ``"pl"`` matches ``pl`` and ``pl-PL``,
  not ``pli``.
- ``app_version`` compares numerically part by part (``5.9 < 5.10``); missing parts are 0 and a
  ``-``/``+`` suffix is ignored, so ``1.0.0-beta`` equals ``1.0.0`` (see
  :mod:`app.audiences.versions`). A device whose version is not a version matches none.
- ``tags``: ``contains`` one tag; ``contains_any`` at least one; ``contains_all`` every one;
  ``contains_none`` has tags and none of them is listed.
- ``attributes.<key>`` (key: 1-64 of ``A-Z a-z 0-9 _ . -``) is typed and never coerces: a
  condition only considers an attribute whose JSON type is its value's type. ``eq 5``
  matches the number 5 (and 5.0), not the string ``"5"``; ``gt 3`` compares numbers
  numerically (as 64-bit floats); ``gt "m"`` compares strings by code point; booleans take
  only ``eq``, ``ne`` and ``in``. ``in`` may mix types. ``exists true`` matches a key that is
  present with a non-null value; ``exists false`` the opposite.
- ``last_seen`` ``within_days N``: last seen at or after ``now - N days``;
  ``not_within_days N``: before it.
- ``platform``, ``timezone``, ``user_id`` and ``device_id`` compare exactly.

Missing values (three-valued logic, decided once)
-------------------------------------------------
A condition on a missing value is **false**, whatever the operator: a NULL locale, a missing
or null attribute, an attribute of another JSON type, a version that is not a version, tags
that are not a list. So ``{"field": "locale", "op": "ne", "value": "pl"}`` does not match a
device without a locale, while ``{"not": {"field": "locale", "op": "eq", "value": "pl"}}``
does. SQL follows the same two-valued logic: every compiled condition is guarded with
``IS NOT NULL`` so that it is TRUE or FALSE, never NULL, and ``NOT`` means exactly Python's
``not``.

Limits and errors
-----------------
At most 16 levels of nesting and 1,000 nodes; strings of at most 256 characters (no NUL);
lists of at most 10,000 items; numbers finite. :func:`parse_rules` collects every problem
(up to 100) and raises :class:`RuleErrors`; each :class:`RuleError` names its node with a
path such as ``rules.all[2].value`` (the root is ``rules``, list items are ``[i]``, object
members ``.name``; an unknown key is reported on the object that holds it). What parses
reads back unchanged through ``to_json()``, except that device ids come back lower-case.

SQL
---
:func:`compile_rules` returns a boolean SQLAlchemy expression over the ``device`` table's
columns (select from :class:`~app.devices.models.Device` itself, not an alias). Every value
from a rule, and every constant the compiler adds, is a bound parameter; a list is one bound
parameter (a PostgreSQL array, a JSON text on SQLite), so a rule never approaches a driver's
parameter limit. Where the dialects differ (JSON types, tag containment, list membership),
the expression holds small custom constructs compiled per dialect with ``@compiles``, so the
*same* expression runs on PostgreSQL (asyncpg, JSONB) and SQLite (aiosqlite, JSON text);
any other dialect is refused at compile time.

Python
------
:func:`evaluate` is the reference: the same semantics, in Python, over a mapping of the
device's column values. Neither the service nor the workers call it: audiences are always
selected in SQL (:func:`app.audiences.service.audience_filter`); the tests hold the compiled
SQL to it.

Modules
-------
Import from this package. The modules below are its parts; each imports only modules listed
before it, so there is no cycle.

- :mod:`~app.audiences.rules.values`: the value types and the normalisation the compiler
  and the evaluator share (locale folding, version keys, attribute JSON kinds, cut-offs).
- :mod:`~app.audiences.rules.tree`: the parsed rule tree.
- :mod:`~app.audiences.rules.fields`: the field catalogue: operators and value validators.
- :mod:`~app.audiences.rules.parse`: :func:`parse_rules` and its errors with paths.
- :mod:`~app.audiences.rules.dialects`: the SQL constructs compiled per dialect.
- :mod:`~app.audiences.rules.compile`: :func:`compile_rules`, the tree as a WHERE clause.
- :mod:`~app.audiences.rules.evaluator`: :func:`evaluate`, the reference in Python.
"""

from app.audiences.rules.compile import compile_rules
from app.audiences.rules.evaluator import evaluate
from app.audiences.rules.fields import MAX_DAYS as MAX_DAYS
from app.audiences.rules.fields import MAX_LIST as MAX_LIST
from app.audiences.rules.fields import MAX_STRING as MAX_STRING
from app.audiences.rules.parse import MAX_DEPTH as MAX_DEPTH
from app.audiences.rules.parse import MAX_ERRORS as MAX_ERRORS
from app.audiences.rules.parse import MAX_NODES as MAX_NODES
from app.audiences.rules.parse import ROOT as ROOT
from app.audiences.rules.parse import RuleError, RuleErrors, parse_rules
from app.audiences.rules.tree import AllOf, AnyOf, Condition, Everyone, Node, Not, Rule
from app.audiences.rules.values import Scalar as Scalar
from app.audiences.rules.values import Value as Value

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "Everyone",
    "Node",
    "Not",
    "Rule",
    "RuleError",
    "RuleErrors",
    "compile_rules",
    "evaluate",
    "parse_rules",
]
