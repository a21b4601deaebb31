"""The committed TypeScript client (clients/typescript/) is the one `make client` generates from
the app's current OpenAPI document, covers every route, and maps errors as documented.

No npm here: the document is compared with the app's (no Ray), the generated and compiled
files with the stamp `make client` wrote; the compiled client runs under Node.js when it is
installed (skipped, saying so, when not).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deployments.ingress.openapi import STAMP_FILE, file_digests, render

REPO_ROOT = Path(__file__).resolve().parents[3]
CLIENT = REPO_ROOT / "clients/typescript"
STALE = "the committed TypeScript client is stale: run `make client` and commit the result"


def test_the_committed_openapi_document_is_the_apps() -> None:
    committed = (CLIENT / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), STALE


def test_generated_and_compiled_files_match_the_stamp() -> None:
    stamp = json.loads((CLIENT / STAMP_FILE).read_text(encoding="utf-8"))
    assert stamp["sha256"] == file_digests(CLIENT), STALE
    package = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    # The generators are pinned exactly: the same document gives the same files.
    for name, version in package["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
    assert stamp["generators"] == package["devDependencies"]
    assert "dependencies" not in package, "the client must run without npm install"


def _routes_in_the_document() -> set[str]:
    document = json.loads((CLIENT / "openapi.json").read_text(encoding="utf-8"))
    paths = document["paths"].items()
    return {f"{method.upper()} {path}" for path, item in paths for method in item}


def test_every_route_has_a_client_method() -> None:
    source = (CLIENT / "src/index.ts").read_text(encoding="utf-8")
    table = source[source.index("export const ROUTES") :]
    listed = dict(re.findall(r'"((?:GET|POST) [^"]+)": "(\w+)"', table))
    assert set(listed) == _routes_in_the_document()
    for method in listed.values():
        assert re.search(rf"^  {method}\(", source, flags=re.M), f"no method {method}"
    compiled = (CLIENT / "dist/index.js").read_text(encoding="utf-8")
    assert all(f'"{route}": "{method}"' in compiled for route, method in listed.items())


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the compiled client's own checks need Node.js 18+")
    return node


# A fake fetch answering as the service does (422 with an error body, 503 with Retry-After,
# a proxy's HTML page), so the error mapping is checked without a server.
ERRORS_SCRIPT = """
import { SocialPlayClient, SocialPlayError } from "./dist/index.js";
const answers = {
  "/api/v1/moderation/text": [422, {"content-type": "application/json"},
    JSON.stringify({error: {code: "invalid_field", message: "text is empty", field: "text"}})],
  "/api/v1/trends": [503, {"retry-after": "2", "x-request-id": "r-1"},
    JSON.stringify({error: {code: "overloaded", message: "busy"}})],
  "/health": [502, {}, "<html>bad gateway</html>"],
};
const seen = [];
const fetch = async (url, init) => {
  const u = new URL(url);
  seen.push({path: u.pathname, query: u.search, key: init.headers["X-API-Key"], body: init.body});
  const [status, headers, body] = answers[u.pathname];
  return new Response(body, {status, headers});
};
const ai = new SocialPlayClient({baseUrl: "http://svc:8000/", apiKey: "k", fetch});
const out = {seen};
for (const [name, call] of [
  ["invalid", () => ai.moderateText({text: ""})],
  ["overloaded", () => ai.trends({window_hours: 6, limit: undefined})],
  ["html", () => ai.health()],
]) {
  try { await call(); out[name] = "no error"; }
  catch (e) { out[name] = {isError: e instanceof SocialPlayError, status: e.status,
    code: e.code, field: e.field, retryAfterS: e.retryAfterS, requestId: e.requestId,
    message: e.message}; }
}
for (const options of [{baseUrl: "", apiKey: "k"}, {baseUrl: "http://x", apiKey: ""}]) {
  try { new SocialPlayClient(options); } catch (e) { (out.refused ??= []).push(e.message); }
}
console.log(JSON.stringify(out));
"""


def test_the_compiled_client_maps_errors_under_node() -> None:
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", ERRORS_SCRIPT],
        capture_output=True,
        text=True,
        cwd=CLIENT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["invalid"] == {
        "isError": True,
        "status": 422,
        "code": "invalid_field",
        "field": "text",
        "retryAfterS": None,
        "requestId": None,
        "message": "text is empty",
    }
    assert out["overloaded"]["retryAfterS"] == 2 and out["overloaded"]["requestId"] == "r-1"
    assert out["html"]["code"] == "http_502" and "bad gateway" in out["html"]["message"]
    first, second, _ = out["seen"]
    assert first == {
        "path": "/api/v1/moderation/text",
        "query": "",
        "key": "k",
        "body": '{"text":""}',
    }
    assert second["query"] == "?window_hours=6"  # undefined parameters are left out
    assert [m.split(" ")[0] for m in out["refused"]] == ["baseUrl", "apiKey"]
