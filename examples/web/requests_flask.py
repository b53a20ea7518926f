"""Request signals for a Flask app, with Flask's own exception signal relayed.

Needs: pip install flask   (and a WSGI server; Flask's dev server is used here)
Run:   python examples/web/requests_flask.py   then   curl localhost:5000/stream
"""

import time

from flask import Flask, Response

from tocsin.wsgi import (
    RequestSignalsMiddleware,
    got_request_exception,
    relay_flask_exceptions,
    request_finished,
    request_started,
)

app = Flask(__name__)
app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)
relay_flask_exceptions(app)  # Flask turns errors into 500s before any middleware sees them


@app.get("/stream")
def stream():
    def body():
        for i in range(3):
            yield f"chunk {i}\n"
            time.sleep(0.2)

    return Response(body(), mimetype="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("boom")


@request_started.connect
def on_started(sender, environ, **kwargs):
    print("request_started", environ["REQUEST_METHOD"], environ["PATH_INFO"])


@request_finished.connect
def on_finished(sender, environ, **kwargs):  # after the last chunk, from close()
    print("request_finished", environ["PATH_INFO"])


@got_request_exception.connect
def on_exception(sender, request, exception, **kwargs):  # request: the Flask request
    print("got_request_exception", request.path, repr(exception))


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
