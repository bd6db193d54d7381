"""The OpenAPI page (`/api/v1/docs`), served from swagger-ui files shipped in the package
(cloud/api/static/swagger, see its NOTICE): FastAPI's default page loads them from a CDN, so it
is blank offline or where the CDN is blocked."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).resolve().parent.parent / "static" / "swagger"
# The only files served, each with its type: a fixed list, never a path from the request.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def router_for(api_prefix: str, title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = f"{api_prefix}/docs/assets"

    @router.get(f"{api_prefix}/docs")
    def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{api_prefix}/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url="data:,",  # no icon rather than FastAPI's remote one
            oauth2_redirect_url=OAUTH2_REDIRECT,
        )

    @router.get(OAUTH2_REDIRECT)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(f"{assets}/{{name}}")
    def docs_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such docs asset")
        return FileResponse(
            STATIC / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router
