# `helm test`: the API answers /readyz and one GET /recommend in full. Run by the test Pod
# (templates/tests/api.yaml) with the API image's Python: python -c <this> URL USER_ID TIMEOUT_S
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

base, user_id, timeout = sys.argv[1].rstrip("/"), sys.argv[2], float(sys.argv[3])


def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        sys.exit(f"FAIL GET {path}: {exc}")
    print(f"GET {path} -> {status} {body[:400].decode(errors='replace')}")
    if status != 200:
        sys.exit(f"FAIL GET {path} answered {status}")
    return json.loads(body)


if get("/readyz").get("ready") is not True:
    sys.exit("FAIL /readyz: the API is not ready")
answer = get("/recommend?" + urllib.parse.urlencode({"user_id": user_id, "k": 1}))
if answer.get("based_on") not in ("user", "item", "popular") or not isinstance(
        answer.get("items"), list):
    sys.exit("FAIL /recommend: no items and based_on in the answer")
if answer.get("degraded"):
    sys.exit(f"FAIL /recommend: degraded {answer['degraded']}")
print(f"ok: {len(answer['items'])} item(s) based on {answer['based_on']}")
