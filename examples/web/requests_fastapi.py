"""Request signals for a FastAPI (or Starlette) app under uvicorn.

Needs: pip install fastapi uvicorn
Run:   python examples/web/requests_fastapi.py   then   curl localhost:8000/stream
"""

import asyncio

from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse

from tocsin.asgi import RequestSignalsMiddleware, got_request_exception, request_finished, request_started

app = FastAPI()
app.add_middleware(RequestSignalsMiddleware)


@app.get("/stream")
async def stream(background: BackgroundTasks):
    async def body():
        for i in range(3):
            yield f"chunk {i}\n"
            await asyncio.sleep(0.2)

    background.add_task(print, "background task (runs after request_finished)")
    return StreamingResponse(body(), media_type="text/plain", background=background)


@app.get("/boom")
async def boom():
    raise RuntimeError("boom")


@request_started.connect
def on_started(sender, scope, **kwargs):
    print("request_started", scope["method"], scope["path"])


@request_finished.connect
def on_finished(sender, scope, **kwargs):  # runs in a worker thread: may block
    print("request_finished", scope["path"])


@got_request_exception.connect
async def on_exception(sender, exception, scope, **kwargs):  # async: awaited on the loop
    print("got_request_exception", scope["path"], repr(exception))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
