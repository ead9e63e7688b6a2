"""`secret('aws:NAME')` / `secret('aws:NAME#KEY')`: AWS Secrets Manager, through boto3.

Region, credentials and endpoint come from boto3's usual chain (AWS_REGION,
AWS_PROFILE, instance roles, AWS_ENDPOINT_URL or
AWS_ENDPOINT_URL_SECRETS_MANAGER for a local or private endpoint).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from engine.redaction import Redactor

from .refs import FetchError, SecretRef


class AwsReader:
    """One Secrets Manager client per run, made on the first reference."""

    def __init__(self, redactor: Redactor, environ: Mapping[str, str]) -> None:
        self._redactor = redactor
        self._environ = environ
        self._lock = threading.Lock()
        self._client: Any = None

    def read(self, ref: SecretRef) -> str:
        """The secret's SecretString (its AWSCURRENT version)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._secretsmanager().get_secret_value(SecretId=ref.location)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "error"), error.get("Message", "")
            raise FetchError(f"AWS Secrets Manager: {code}: {message}".rstrip(": ")) from None
        except BotoCoreError as exc:  # no region, no credentials, no connection
            raise FetchError(f"AWS Secrets Manager: {exc}") from None
        if "SecretString" not in response:
            raise FetchError(
                "AWS Secrets Manager: a binary secret (SecretBinary); only text secrets are read"
            )
        return str(response["SecretString"])

    def _secretsmanager(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3})
                self._client = boto3.session.Session().client("secretsmanager", config=config)
            return self._client
