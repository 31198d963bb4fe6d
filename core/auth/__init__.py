"""Who is calling: bearer JWTs (dev HS256 or a JWKS issuer such as Cognito) and URL tokens."""

from core.auth.base import Principal, TokenVerifier
from core.auth.factory import build_verifier
from core.auth.url_tokens import UrlTokens

__all__ = ["Principal", "TokenVerifier", "UrlTokens", "build_verifier"]
