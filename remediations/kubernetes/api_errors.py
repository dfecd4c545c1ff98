"""Recognising the Kubernetes client's ``ApiException`` without importing the client.

Importing any module of ``kubernetes_asyncio`` runs ``kubernetes_asyncio.client``'s
``__init__``, which loads every API group and model class: about 38 MB of RSS in each process.
A process without cluster credentials (the embedded default, a dry run) never builds a client
(``receiver.assembly.kube_client``), yet it imports the actions' modules (the catalog, the probe
the rules' live conditions read). So those modules name ``ApiException`` only for the type
checker and recognise one at run time with ``is_api_exception``, and import the client's API
classes only where they build them from a client they were given.

The check reads ``sys.modules`` instead of importing: an ``ApiException`` can only have been
raised by code that imported ``kubernetes_asyncio.client.exceptions`` first, so while that
module is not loaded no exception is one, and the answer False costs no import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    from kubernetes_asyncio.client.exceptions import ApiException

__all__ = ["EXCEPTIONS_MODULE", "is_api_exception"]

EXCEPTIONS_MODULE = "kubernetes_asyncio.client.exceptions"


def is_api_exception(exc: object) -> TypeGuard[ApiException]:
    """Whether ``exc`` is the Kubernetes client's ``ApiException``. Never imports the client:
    False while it was never imported (module docstring)."""
    module = sys.modules.get(EXCEPTIONS_MODULE)
    return module is not None and isinstance(exc, module.ApiException)
