"""The browser side of benches/dashboard.sh: loads the dashboard's pages in headless Chromium
through chromedriver (W3C WebDriver over HTTP) and prints their paint timings.

Usage: dashboard_paint.py BASE_URL CHROMEDRIVER_PORT LOADS PROFILE_DIR (token in DSM_TOKEN).
"""
import json, os, statistics, sys, time, urllib.request

base, port, loads, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wd = f"http://127.0.0.1:{port}"

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(wd + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["value"]

for _ in range(100):
    try:
        if call("GET", "/status")["ready"]:
            break
    except OSError:
        time.sleep(0.1)
args = ["--headless=new", f"--user-data-dir={profile}", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,800"]
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}})["sessionId"]
s = f"/session/{sid}"
run = lambda script, *a: call("POST", s + "/execute/sync", {"script": script, "args": list(a)})

def measure(hash_, wait_mark):
    fcp, content = [], []
    for _ in range(loads):
        call("POST", s + "/url", {"url": "about:blank"})
        call("POST", s + "/url", {"url": f"{base}/{hash_}"})
        deadline = time.time() + 30
        while True:
            got = run("""const p = performance.getEntriesByName('first-contentful-paint')[0];
                         const c = performance.getEntriesByName('dsm:content')[0];
                         return [p ? p.startTime : null, c ? c.startTime : null];""")
            if got[0] is not None and (got[1] is not None or not wait_mark):
                break
            if time.time() > deadline:
                raise SystemExit(f"{hash_}: no paint within 30 s: {got}")
            time.sleep(0.02)
        fcp.append(got[0])
        if wait_mark:
            content.append(got[1])
    return fcp, content

# The baseline: the login page (the shell, no API call).
call("POST", s + "/url", {"url": f"{base}/"})
run("localStorage.clear();")
base_fcp, _ = measure("#/login", False)
# Sign in as the dashboard does.
call("POST", s + "/execute/async", {"script": """const done = arguments[arguments.length - 1];
    fetch('/api/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({token: arguments[0]})}).then((r) => r.json()).then((i) => {
      localStorage.setItem('dsm.who', JSON.stringify({name: i.name, role: i.role})); done(i.name); });""",
    "args": [os.environ["DSM_TOKEN"]]})
rows = [("login page (baseline)", base_fcp, None)]
for name, hash_ in [("overview", "#/"), ("source list", "#/sources")]:
    fcp, content = measure(hash_, True)
    rows.append((name, fcp, content))
call("DELETE", s)

med = lambda xs: statistics.median(xs)
print(f"{'page':<24} {'FCP median':>11} {'FCP max':>8} {'content median':>15} {'content max':>12} {'vs baseline':>12}")
for name, fcp, content in rows:
    c_med = f"{med(content):.0f} ms" if content else "-"
    c_max = f"{max(content):.0f} ms" if content else "-"
    ratio = f"{med(content) / med(base_fcp):.2f}x" if content else "1.00x"
    print(f"{name:<24} {med(fcp):>8.0f} ms {max(fcp):>5.0f} ms {c_med:>15} {c_max:>12} {ratio:>12}")
