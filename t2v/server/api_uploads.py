"""The upload routes: the source files of edit and control jobs (t2v.server.uploads).

POST   /v1/uploads            multipart, one file in the field "file" -> 201 {"id", "kind", "frames", ...}
GET    /v1/uploads/{id}       its record (kind, format, frames, width, height, fps, bytes, jobs, expires_at)
GET    /v1/uploads/{id}/file  the file as it was uploaded (?download=1 as an attachment)
DELETE /v1/uploads/{id}       remove it -> 204 (409 while a queued or running job uses it)

The body's size is bounded by the Guard as it arrives (413), the file's again as it is stored.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI, File, HTTPException, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse

from t2v.pipelines.long_video.storyboard import excerpt
from t2v.server.uploads import MEDIA_TYPES, UploadError


def _upload_id(upload_id: str) -> str:
    try:
        return str(uuid.UUID(upload_id))
    except ValueError:
        raise HTTPException(404, f"no upload {excerpt(upload_id)}") from None


def _refusal(e: UploadError) -> Exception:
    """A 422 as the API's other 422s (naming the field "file"), else an HTTP error with the message."""
    if e.status == 422:
        return RequestValidationError([{"loc": ("body", "file"), "msg": str(e), "type": "value_error"}])
    return HTTPException(e.status, str(e))


def upload_routes(api: FastAPI, queue) -> None:
    """Add the upload routes over `queue.uploads`."""
    uploads = queue.uploads

    @api.post(
        "/v1/uploads",
        status_code=201,
        responses={
            413: {"description": "The file is larger than the server's --max-upload-mb"},
            422: {"description": "Not a video t2v can read, nor OpenPose JSON"},
            429: {"description": "Too many uploads wait for a job"},
        },
    )
    def upload(
        response: Response,
        file: UploadFile = File(
            ...,
            description="A video (.mp4, .webm, .gif) or OpenPose JSON (.json): the source of edit and control jobs.",
        ),
    ):
        """Keep a source file for edit and control jobs (their `source`: the id returned). Only the file name's
        suffix is used (the file is stored under the id); the content must be what the suffix says."""
        try:
            record = uploads.add(file.file, file.filename)
        except UploadError as e:
            raise _refusal(e) from None
        response.headers["Location"] = f"/v1/uploads/{record['id']}"
        return record

    @api.get("/v1/uploads/{upload_id}")
    def get_upload(upload_id: str):
        """An upload's record: kind (video or pose), format, frames, width, height, fps, bytes, the jobs that use
        it, and when it expires if no job uses it."""
        record = uploads.get(_upload_id(upload_id))
        if record is None:
            raise HTTPException(404, f"no upload {upload_id}")
        return record

    @api.get(
        "/v1/uploads/{upload_id}/file",
        response_class=FileResponse,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
    )
    def get_upload_file(upload_id: str, download: bool = False):
        """The uploaded file, as it was uploaded."""
        upload_id = _upload_id(upload_id)
        path = uploads.path(upload_id)
        if path is None:
            raise HTTPException(404, f"no upload {upload_id}")
        fmt = path.suffix[1:]
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[fmt],
            filename=f"t2v-upload-{upload_id}.{fmt}",
            content_disposition_type="attachment" if download or fmt == "json" else "inline",
        )

    @api.delete("/v1/uploads/{upload_id}", status_code=204, responses={409: {"description": "A job uses it"}})
    def delete_upload(upload_id: str):
        """Remove an upload and its file (refused while a queued or running job uses it; a finished job keeps
        its results)."""
        try:
            if not uploads.delete(_upload_id(upload_id)):
                raise HTTPException(404, f"no upload {upload_id}")
        except UploadError as e:
            raise _refusal(e) from None
        return Response(status_code=204)
