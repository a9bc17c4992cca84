"""Azure's shapes: deployment-routed requests (the deployment names the model) and the management
plane's deployment resource (`Microsoft.CognitiveServices/accounts/deployments`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.api.protocol.chat import ChatCompletionRequest, CompletionRequest


class DeploymentChatRequest(ChatCompletionRequest):
    # The URL names the deployment; Azure's REST callers often leave `model` out.
    model: str = ""


class DeploymentCompletionRequest(CompletionRequest):
    model: str = ""


class DeployedModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: str = "OpenAI"
    name: str = Field(min_length=1, description="The model or checkpoint the deployment calls.")
    version: str = "1"


class DeploymentProperties(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: DeployedModel


class DeploymentPut(BaseModel):
    """The tutorial's body: `{"sku": {...}, "properties": {"model": {"name": ...}}}`."""

    model_config = ConfigDict(extra="allow")

    sku: dict[str, Any] = Field(default_factory=lambda: {"name": "standard", "capacity": 1})
    properties: DeploymentProperties
