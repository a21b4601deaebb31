"""HTTP routes of the ingress: one ``APIRouter`` per resource, joined by ``build_fastapi_app``.

A route validates what HTTP alone can say, calls one service function and shapes its answer;
what it needs (key check, state, config, node handles) arrives through ``deps.py``.
"""
