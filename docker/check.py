#!/usr/bin/env python3
"""Checks the container files without a Docker engine or a cluster.

- compose.yaml and k8s/*.yaml parse as YAML and have the expected structure;
  every ConfigMap/Secret a Deployment references exists, every probe names a port
  the container declares, every compose depends_on names a service with a healthcheck.
- Dockerfile: hadolint-style rules (tagged base images, no :latest, apt-get with
  --no-install-recommends and list cleanup, JSON-form CMD/ENTRYPOINT/HEALTHCHECK,
  every final stage runs as a non-root USER and has a HEALTHCHECK).
- coherent.toml and coherent-daemon.toml are the manifests' ConfigMaps word for word;
  sidecar/tests/deploy.rs starts them (needs MySQL, so not here).

Exit status 0 when every check passes; each failure is printed.
"""
import os, re, sys
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def compose():
    with open(os.path.join(HERE, "compose.yaml")) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services", {})
    check({"mysql", "rabbitmq", "coherent", "app"} <= set(services), "compose: services missing")
    for name, s in services.items():
        check("image" in s or "build" in s, f"compose: {name} has neither image nor build")
        if "build" in s:
            b = s["build"]
            check(os.path.exists(os.path.join(HERE, b["context"], b["dockerfile"])),
                  f"compose: {name} dockerfile not found")
        for dep, cond in (s.get("depends_on") or {}).items():
            check(dep in services, f"compose: {name} depends on unknown {dep}")
            if cond.get("condition") == "service_healthy":
                has_hc = "healthcheck" in services.get(dep, {}) or services.get(dep, {}).get("build")
                check(has_hc, f"compose: {name} waits for {dep} to be healthy, it has no healthcheck")
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                check(os.path.exists(os.path.join(HERE, src)), f"compose: {name} volume {src} missing")
    cmd = " ".join(services["mysql"].get("command", []))
    for flag in ["--log-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id"]:
        check(flag in cmd, f"compose: mysql lacks {flag}")


def k8s(name="user-service.yaml", containers=("app", "coherent")):
    with open(os.path.join(HERE, "k8s", name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for d in docs:
        check("apiVersion" in d and "kind" in d and "name" in d.get("metadata", {}),
              f"k8s: object without apiVersion/kind/name: {d.get('kind')}")
    deps = [d for d in docs if d["kind"] == "Deployment"]
    check(len(deps) == 1, "k8s: one Deployment expected")
    for dep in deps:
        spec = dep["spec"]
        check(spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(),
              "k8s: selector does not match the pod labels")
        pod = spec["template"]["spec"]
        names = [c["name"] for c in pod["containers"]]
        check(names == list(containers), f"k8s {name}: containers {names}")
        for v in pod.get("volumes", []):
            if "configMap" in v:
                check(("ConfigMap", v["configMap"]["name"]) in kinds, f"k8s: ConfigMap {v['configMap']['name']} missing")
        for c in pod["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    sec = kinds.get(("Secret", ref["name"]))
                    check(sec is not None and ref["key"] in sec.get("stringData", {}),
                          f"k8s: {c['name']} needs Secret {ref['name']}/{ref['key']}")
            for probe in ["livenessProbe", "readinessProbe"]:
                p = c.get(probe)
                check(p is not None, f"k8s: {c['name']} has no {probe}")
                if p and "httpGet" in p:
                    check(p["httpGet"]["port"] in ports, f"k8s: {c['name']} {probe} port not declared")
            check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
                  f"k8s: {c['name']} allows privilege escalation")
        coh = [c for c in pod["containers"] if c["name"] == "coherent"][0]
        check(coh["readinessProbe"]["httpGet"]["path"] == "/readyz", "k8s: coherent readiness must be /readyz")
        check(coh["livenessProbe"]["httpGet"]["path"] == "/healthz", "k8s: coherent liveness must be /healthz")
    check(pod["securityContext"].get("runAsNonRoot") is True, "k8s: pod may run as root")
    return kinds


def dockerfile():
    with open(os.path.join(HERE, "Dockerfile")) as f:
        text = f.read()
    # Join continuation lines.
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    stages, cur = {}, None
    for ln in lines:
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        instr, _, rest = s.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image, cur = m.group(1), m.group(2) or m.group(1)
            stages[cur] = {"from": image, "user": None, "health": False}
            if image not in stages:
                check(":" in image or "@" in image, f"Dockerfile: DL3006 untagged base image {image}")
                check(not image.endswith(":latest"), f"Dockerfile: DL3007 {image} uses latest")
        elif instr == "RUN" and "apt-get install" in rest:
            check("--no-install-recommends" in rest, "Dockerfile: DL3015 apt-get install without --no-install-recommends")
            check("rm -rf /var/lib/apt/lists" in rest, "Dockerfile: DL3009 apt lists not removed")
            check(" -y" in rest, "Dockerfile: apt-get install without -y")
        elif instr == "USER":
            stages[cur]["user"] = rest.strip()
        elif instr == "HEALTHCHECK":
            stages[cur]["health"] = True
            check("CMD [" in rest, "Dockerfile: HEALTHCHECK CMD not in JSON form")
        elif instr in ("CMD", "ENTRYPOINT"):
            check(rest.strip().startswith("["), f"Dockerfile: DL3025 {instr} not in JSON form")
        elif instr == "ADD":
            failures.append("Dockerfile: DL3020 use COPY instead of ADD")
    for final in ("coherent", "user-service"):
        st = stages.get(final)
        check(st is not None, f"Dockerfile: stage {final} missing")
        if st:
            check(st["user"] not in (None, "root", "0"), f"Dockerfile: DL3002 stage {final} runs as root")
            check(st["health"], f"Dockerfile: stage {final} has no HEALTHCHECK")


def main():
    compose()
    kinds = k8s()
    daemon = k8s("invalidation-daemon.yaml", ("coherent",))
    dockerfile()
    # The image's configs are the manifests' ConfigMaps, word for word.
    with open(os.path.join(HERE, "coherent.toml")) as f:
        check(f.read() == kinds[("ConfigMap", "coherent-config")]["data"]["coherent.toml"],
              "k8s: user-service ConfigMap differs from docker/coherent.toml")
    with open(os.path.join(HERE, "coherent-daemon.toml")) as f:
        check(f.read() == daemon[("ConfigMap", "coherent-daemon-config")]["data"]["coherent.toml"],
              "k8s: invalidation-daemon ConfigMap differs from docker/coherent-daemon.toml")
    # Starting them needs a MySQL server (and Redis for the daemon): the Rust test
    # sidecar/tests/deploy.rs runs the real binary with each config and environment
    # against private servers, to /readyz 200 and an invalidated key.
    for f in failures:
        print("FAIL", f)
    print("docker/check.py:", "ok" if not failures else f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


main()
