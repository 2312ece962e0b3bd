"""The explorer: a local web page over one model's attribution maps, ROAD curves and ground truth.

After EMILE-UI (Rong et al.'s ROAD as an interactive tool): choose an image (filter by class,
correct or wrong, logit range) and see it, its mask and the model's probability; choose a
method and see its map over the image at an adjustable opacity, with that image's MoRF and
LeRF curves; move the percentage slider and see the images with the most and least relevant
pixels imputed away, with the model's probability on each. Beside them what only a generator
knows: the image's intervention pairs (one attribute redrawn) and block removals, each with
the Δlogit it caused. Same stack as the study runner: Flask under waitress, every asset local,
a strict Content-Security-Policy; bad parameters get a 400 naming the field and what is allowed.
"""

from __future__ import annotations

import signal
from typing import Callable

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from two4two.explorer.session import BadRequest, ExplorerSession, png

CSP = "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def create_app(session: ExplorerSession) -> Flask:
    app = Flask(__name__, static_folder="static", template_folder="templates")

    def png_response(data: bytes) -> Response:
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=3600"  # same URL, same bytes
        return response

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.get("/")
    def page():
        return render_template("explorer.html", split=session.split, n=session.n, methods=session.methods)

    @app.get("/api/images")
    def images():
        args = request.args
        unknown = sorted(set(args) - {"label", "correct", "min_logit", "max_logit"})
        if unknown:
            raise BadRequest(f"{unknown[0][:40]}: not a filter; allowed: label, correct, min_logit, max_logit")
        return jsonify(images=session.listing(args.get("label", "any"), args.get("correct", "any"),
                                              args.get("min_logit"), args.get("max_logit")))

    @app.get("/api/image/<raw>")
    def details(raw):
        return jsonify(session.details(session.index(raw)))

    @app.get("/api/curves/<method>/<raw>")
    def curves(method, raw):
        return jsonify(session.curves(session.method(method), session.index(raw)))

    @app.get("/api/perturbed/<method>/<raw>")
    def perturbed(method, raw):
        m, i, p = session.method(method), session.index(raw), session.percent(request.args.get("p"))
        out = {"p": p}
        for order in ("morf", "lerf"):
            _, probability = session.perturbed(m, i, order, p)
            out[order] = {"probability": probability, "url": f"/perturbed/{m}/{i}/{order}/{p}.png"}
        return jsonify(out)

    @app.get("/image/<raw>.png")
    def image(raw):
        return png_response(png(session.images[session.index(raw)]))

    @app.get("/mask/<raw>.png")
    def mask(raw):
        return png_response(session.mask_png(session.index(raw)))

    @app.get("/map/<method>/<raw>.png")
    def attribution_map(method, raw):
        return png_response(session.map_png(session.method(method), session.index(raw)))

    @app.get("/perturbed/<method>/<raw>/<order>/<p>.png")
    def perturbed_image(method, raw, order, p):
        image, _ = session.perturbed(session.method(method), session.index(raw), session.order(order), session.percent(p))
        return png_response(png(image))

    @app.get("/intervention/<attribute>/<raw>.png")
    def intervention(attribute, raw):
        return png_response(session.ground_truth_image("intervention", attribute, session.index(raw)))

    @app.get("/removal/<part>/<raw>.png")
    def removal(part, raw):
        return png_response(session.ground_truth_image("removal", part, session.index(raw)))

    return app


def serve(session: ExplorerSession, host: str = "127.0.0.1", port: int = 8050, threads: int = 4,
          ready: Callable[[], None] | None = None) -> None:
    """Run the explorer with waitress until interrupted (Ctrl+C); `ready` runs once the port is bound."""
    from waitress.server import create_server

    signal.signal(signal.SIGINT, signal.default_int_handler)  # not inherited as ignored from a launcher
    server = create_server(create_app(session), host=host, port=port, threads=threads, ident="two4two-explorer")
    if ready is not None:
        ready()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
