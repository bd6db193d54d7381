"""A console table as a CSV download: UTF-8 with a BOM, so Excel shows Chinese as Chinese."""

from __future__ import annotations

from fastapi.responses import Response

from cloud.console.web import PAGE_HEADERS


def csv_response(text: str, filename: str) -> Response:
    headers = {
        **PAGE_HEADERS,
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    return Response(("\ufeff" + text).encode("utf-8"), media_type="text/csv", headers=headers)
