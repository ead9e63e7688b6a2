"""`secret('vault:[MOUNT:]PATH#KEY')`: HashiCorp Vault's KV version 2, through hvac.

Configured as the Vault CLI is: VAULT_ADDR, VAULT_NAMESPACE, VAULT_CACERT,
VAULT_SKIP_VERIFY, and a token from VAULT_TOKEN, an AppRole login
(VAULT_ROLE_ID and VAULT_SECRET_ID, at VAULT_APPROLE_MOUNT or `approle`), or
the ~/.vault-token that `vault login` leaves. The client logs in once per run.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.redaction import Redactor

from .refs import FetchError, SecretRef

if TYPE_CHECKING:
    import hvac

INSTALL = "pip install 'runbook-engine[vault]'"
TIMEOUT = 30  # seconds per request: a Vault that hangs fails the step, not the run

# What Vault's HTTP status means for the operator (hvac raises one class per status).
STATUS = {
    "InvalidRequest": "400 invalid request",
    "Unauthorized": "401 not authenticated",
    "Forbidden": "403 permission denied",
    "InvalidPath": "404 no secret at this path",
    "RateLimitExceeded": "429 rate limited",
    "InternalServerError": "500 internal error",
    "VaultNotInitialized": "501 not initialized",
    "BadGateway": "502 bad gateway",
    "VaultDown": "503 sealed or down",
}


class VaultReader:
    """One Vault client per run, logged in on the first reference."""

    def __init__(self, redactor: Redactor, environ: Mapping[str, str]) -> None:
        self._redactor = redactor
        self._environ = environ
        self._lock = threading.Lock()
        self._client: hvac.Client | None = None
        self._login_error = ""
        self.address = environ.get("VAULT_ADDR", "")

    def read(self, ref: SecretRef) -> Any:
        """The secret's fields (its latest version), as a mapping."""
        client = self._logged_in()  # first: it says how to install hvac if missing
        import hvac.exceptions

        where = f"{ref.mount}/data/{ref.location}"
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=ref.location, mount_point=ref.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.VaultError as exc:
            raise FetchError(f"Vault at {self.address}: {_cause(exc)} (GET {where})") from None
        except OSError as exc:  # requests' connection errors are OSErrors
            raise FetchError(f"Vault at {self.address}: cannot connect: {exc}") from None
        return response["data"]["data"]

    def _logged_in(self) -> hvac.Client:
        with self._lock:
            if self._client is None and not self._login_error:
                try:
                    self._client = self._login()
                except FetchError as exc:
                    self._login_error = str(exc)  # one failed login per run, not per path
            if self._client is None:
                raise FetchError(self._login_error)
            return self._client

    def _login(self) -> hvac.Client:
        try:
            import hvac
            import hvac.exceptions
        except ImportError:
            raise FetchError(f"the Vault backend needs hvac: {INSTALL}") from None
        if not self.address:
            raise FetchError("VAULT_ADDR is not set: export VAULT_ADDR=https://vault.example:8200")
        env = self._environ
        verify: bool | str = env.get("VAULT_CACERT") or True
        if env.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "true", "yes"):
            verify = False
        client = hvac.Client(
            url=self.address,
            namespace=env.get("VAULT_NAMESPACE") or None,
            verify=verify,
            timeout=TIMEOUT,
        )
        token = env.get("VAULT_TOKEN") or ""
        if token:
            self._redactor.add(token)
            client.token = token
            return client
        role_id, secret_id = env.get("VAULT_ROLE_ID"), env.get("VAULT_SECRET_ID")
        if role_id and secret_id:
            self._redactor.add(secret_id)
            mount = env.get("VAULT_APPROLE_MOUNT") or "approle"
            try:
                client.auth.approle.login(role_id, secret_id, mount_point=mount)
            except hvac.exceptions.VaultError as exc:
                raise FetchError(
                    f"Vault at {self.address}: AppRole login at auth/{mount} failed: {_cause(exc)}"
                ) from None
            except OSError as exc:
                raise FetchError(f"Vault at {self.address}: cannot connect: {exc}") from None
            self._redactor.add(str(client.token))
            return client
        return self._cli_token(client)

    def _cli_token(self, client: hvac.Client) -> hvac.Client:
        """The token `vault login` saved, as the Vault CLI would use it."""
        saved = Path.home() / ".vault-token"
        token = saved.read_text().strip() if saved.is_file() else ""
        if not token:
            raise FetchError(
                "no Vault credentials: export VAULT_TOKEN, or VAULT_ROLE_ID and "
                "VAULT_SECRET_ID for an AppRole login (or run `vault login`)"
            )
        self._redactor.add(token)
        client.token = token
        return client


def _cause(exc: Exception) -> str:
    """Vault's status and its own words. hvac's str() appends the URL, which
    the caller says in its own terms."""
    status = STATUS.get(type(exc).__name__, type(exc).__name__)
    errors = getattr(exc, "errors", None) or []
    words = " ".join(" ".join(str(e).split()) for e in errors if e)
    return f"{status}: {words}" if words else status
