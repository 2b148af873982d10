"""The classic Cloud Run Python sample: Flask's "Hello, World!", served by gunicorn.

Flask sends a returned string as `text/html; charset=utf-8`; the body is the same 13
bytes as the wasm guests', and that is what the benchmark compares.
"""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello_world():
    return "Hello, World!"
