"""Azure OpenAI's door: the same services under Azure's routes, auth, versions and errors.

Three sets of routes reach the services that `/v1` reaches:
- the data plane, `/openai/...?api-version=...`, as `AzureOpenAI(azure_endpoint=...)` calls it:
  files, fine-tuning jobs and models as in `/v1`, and chat and text completions routed by
  deployment (`/openai/deployments/{name}/chat/completions`);
- Azure's "v1" API, `/openai/v1/...`, as `OpenAI(base_url=".../openai/v1/")` calls it (no
  api-version; `model` may name a deployment, as everywhere);
- the management plane's deployment resource, which the tutorial calls with `requests.put` on
  `management.azure.com`: here `tunesmith serve` answers it itself.
The key comes as `api-key` or `Authorization: Bearer` (api/guard.py); errors on these routes keep
OpenAI's fields and take Azure's codes and messages where Azure's differ (api/errors.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse

from tunesmith.api import chat_service, completions_service
from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.errors import AZURE_PREFIX, Door
from tunesmith.api.protocol.azure import (
    DeploymentChatRequest,
    DeploymentCompletionRequest,
    DeploymentPut,
)
from tunesmith.errors import TunesmithError
from tunesmith.store import Store
from tunesmith.store.deployments import DeploymentRow, deploy

# `2024-10-21`, `2025-04-01-preview`: a date, and preview or not. Azure answers any version it
# ships; tunesmith answers every well-formed one from the first GA on, so new SDKs keep working.
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
FIRST_API_VERSION = "2022-12-01"


def _version_error(version: str | None, where: Door) -> TunesmithError | None:
    example = "2024-10-21" if where == "azure" else "2024-10-01"
    hint = f"Add ?api-version={example} (AzureOpenAI(api_version=...) sends it for you)."
    if version is None:
        if where == "arm":
            return TunesmithError(
                "The api-version query parameter (?api-version=) is required for all requests.",
                hint,
                param="api-version",
                code="MissingApiVersionParameter",
            )
        # Azure's data plane answers a missing version as an unknown route.
        return TunesmithError("Resource not found", hint, status=404, code="404")
    if not API_VERSION.match(version) or version[:10] < FIRST_API_VERSION:
        code = "InvalidApiVersionParameter" if where == "arm" else "BadRequest"
        return TunesmithError(
            f"API version not supported: {version!r}.", hint, param="api-version", code=code
        )
    return None


def data_plane_version(api_version: Annotated[str | None, Query(alias="api-version")] = None):
    if (error := _version_error(api_version, "azure")) is not None:
        raise error


def management_version(api_version: Annotated[str | None, Query(alias="api-version")] = None):
    if (error := _version_error(api_version, "arm")) is not None:
        raise error


# --- the data plane: chat and completions by deployment -------------------------------------------
deployment_routes = APIRouter(tags=["azure"])


def deployed(store: Store, name: str) -> str:
    """The model a deployment calls, or Azure's DeploymentNotFound."""
    row = store.deployments.get(name)
    if row is None:
        raise _no_deployment(name)
    return row.model


@deployment_routes.post("/deployments/{deployment}/chat/completions", response_model=None)
async def deployment_chat(
    deployment: str,
    req: DeploymentChatRequest,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
) -> dict | StreamingResponse:
    req = req.model_copy(update={"model": deployed(store, deployment)})
    return await chat_service.create(request, store, engine, req)


@deployment_routes.post("/deployments/{deployment}/completions", response_model=None)
async def deployment_completion(
    deployment: str,
    req: DeploymentCompletionRequest,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
) -> dict | StreamingResponse:
    req = req.model_copy(update={"model": deployed(store, deployment)})
    return await completions_service.create(request, store, engine, req)


# --- the management plane: the deployment resource ------------------------------------------------
ACCOUNT = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}"
    "/providers/Microsoft.CognitiveServices/accounts/{account}"
)
management = APIRouter(prefix=ACCOUNT, tags=["azure"], dependencies=[Depends(management_version)])


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def resource(request: Request, row: DeploymentRow) -> dict[str, Any]:
    """Azure's deployment resource JSON; `provisioningState` is Succeeded at once (a model here
    needs no provisioning: it loads on its first request)."""
    p = request.path_params
    account_id = ACCOUNT.format(
        subscription=p["subscription"], resource_group=p["resource_group"], account=p["account"]
    )
    return {
        "id": f"{account_id}/deployments/{row.name}",
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "name": row.name,
        "sku": row.sku,
        "properties": {
            **row.properties,
            "provisioningState": "Succeeded",
            "capabilities": {"chatCompletion": "true", "completion": "true"},
        },
        "systemData": {
            "createdBy": "tunesmith",
            "createdAt": _iso(row.created_at),
            "lastModifiedBy": "tunesmith",
            "lastModifiedAt": _iso(row.updated_at),
        },
    }


@management.put("/deployments/{name}", status_code=201)
def put_deployment(
    name: str, body: DeploymentPut, request: Request, response: Response, store: StoreDep
) -> dict:
    """Create (201) or update (200) a deployment of a model or checkpoint."""
    row, created = deploy(
        store,
        name,
        body.properties.model.name,
        sku=body.sku,
        properties=body.properties.model_dump(),
    )
    response.status_code = 201 if created else 200
    return resource(request, row)


@management.get("/deployments")
def list_deployments(request: Request, store: StoreDep) -> dict:
    return {"value": [resource(request, row) for row in store.deployments.list()]}


@management.get("/deployments/{name}")
def get_deployment(name: str, request: Request, store: StoreDep) -> dict:
    row = store.deployments.get(name)
    if row is None:
        raise _no_deployment(name)
    return resource(request, row)


@management.delete("/deployments/{name}", status_code=200)
def delete_deployment(name: str, response: Response, store: StoreDep) -> None:
    """200 when deleted, 204 when there was nothing to delete (ARM's answers)."""
    if not store.deployments.delete(name):
        response.status_code = 204


def _no_deployment(name: str) -> TunesmithError:
    """Azure's answer for a deployment name nobody made (data plane and management alike)."""
    return TunesmithError(
        "The API deployment for this resource does not exist.",
        f"No deployment is named {name!r}: `tunesmith deployments list` shows them, and "
        "`tunesmith deploy MODEL --name NAME` (or the management PUT) makes one.",
        status=404,
        code="DeploymentNotFound",
    )


def mount(app: FastAPI, openai_routers: list[APIRouter], v1_routers: list[APIRouter]) -> None:
    """Add Azure's routes. Copies of the /v1 routes stay out of the OpenAPI schema: one
    operation, one schema entry."""
    data_plane = APIRouter(prefix=AZURE_PREFIX, dependencies=[Depends(data_plane_version)])
    for router in (*openai_routers, deployment_routes):
        data_plane.include_router(router)
    azure_v1 = APIRouter(prefix=f"{AZURE_PREFIX}/v1")
    for router in v1_routers:
        azure_v1.include_router(router)
    app.include_router(azure_v1, include_in_schema=False)  # before /openai: its routes are longer
    app.include_router(data_plane, include_in_schema=False)
    app.include_router(management, include_in_schema=False)
