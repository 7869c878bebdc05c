"""Magento-shaped REST errors raised by the sandbox and rendered as Magento's error body."""

from __future__ import annotations

import re
from typing import Any

# Magento's own message templates, copied verbatim so clients can match on them.
MSG_ROUTE_NOT_FOUND = "Request does not match any route."
MSG_UNAUTHORIZED = "The consumer isn't authorized to access %resources."
MSG_BAD_CREDENTIALS = (
    "The account sign-in was incorrect or your account is disabled temporarily. "
    "Please wait and try again later."
)
MSG_REQUIRED = '"%fieldName" is required. Enter and try again.'
MSG_WRONG_TYPE = (
    'Error occurred during "%fieldName" processing. The "%value" value\'s type is invalid. '
    'The "%type" type was expected. Verify and try again.'
)
MSG_INVALID_VALUE = 'Invalid value of "%value" provided for the %fieldName field.'
MSG_DECODING = "Decoding error: %details"
MSG_PRODUCT_NOT_FOUND = (
    "The product that was requested doesn't exist. Verify the product and try again."
)
MSG_NO_SUCH_ENTITY = "No such entity with %fieldName = %fieldValue"
MSG_URL_KEY_EXISTS = "URL key for specified store already exists."
MSG_INTERNAL = "Internal Error. Details are available in Magento log file. Report ID: %reportId"
MSG_TOO_MANY_REQUESTS = "Too Many Requests"

_PLACEHOLDER = re.compile(r"%(\w+)")


class MagentoError(Exception):
    """An error answered with Magento's REST error body.

    Attributes:
        status: HTTP status code.
        message: the message template, placeholders (`%1`, `%name`) left in as Magento does.
        parameters: values for the placeholders: a dict for named ones, a list for `%1`, `%2`.
        errors: further errors (Magento fills this for InputException with several causes).
        headers: extra response headers (e.g. Retry-After).
    """

    def __init__(
        self,
        status: int,
        message: str,
        parameters: dict[str, str] | list[str] | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(render_message(message, parameters))
        self.status = status
        self.message = message
        self.parameters = parameters
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body Magento's REST renderer would produce."""
        return error_body(self.message, self.parameters, errors=self.errors)


def error_body(
    message: str,
    parameters: dict[str, str] | list[str] | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build `{"message", "parameters"?, "errors"?}`; Magento omits empty parameters."""
    body: dict[str, Any] = {"message": message}
    if parameters:
        body["parameters"] = parameters
    if errors:
        body["errors"] = errors
    return body


def render_message(message: str, parameters: dict[str, Any] | list[Any] | None) -> str:
    """Fill `%name` / `%1` placeholders the way Magento's Phrase renderer does."""
    if not parameters:
        return message
    if isinstance(parameters, dict):
        named = {str(k): str(v) for k, v in parameters.items()}
    else:
        named = {str(i + 1): str(v) for i, v in enumerate(parameters)}

    def fill(match: re.Match[str]) -> str:
        return named.get(match.group(1), match.group(0))

    return _PLACEHOLDER.sub(fill, message)


def not_found_route() -> MagentoError:
    """404 for an unknown route or method (Magento answers both with this)."""
    return MagentoError(404, MSG_ROUTE_NOT_FOUND)


def unauthorized(resources: str) -> MagentoError:
    """401 for a missing, unknown or expired token."""
    return MagentoError(401, MSG_UNAUTHORIZED, {"resources": resources})


def no_such_entity(field_name: str, field_value: object) -> MagentoError:
    """404 as raised by `NoSuchEntityException::singleField`."""
    return MagentoError(
        404, MSG_NO_SUCH_ENTITY, {"fieldName": field_name, "fieldValue": str(field_value)}
    )


def bad_request(message: str, parameters: dict[str, str] | list[str] | None = None) -> MagentoError:
    """400 for input Magento rejects (InputException, LocalizedException)."""
    return MagentoError(400, message, parameters)
