# scripts/lib/deploy-tools.sh — the offline validators the deployment tests use, installed
# when missing (sourced by scripts/test.sh after scripts/lib/services.sh):
#
#   deploy_tools_ensure VENV   exports
#     KAILASH_TEST_NGINX          nginx binary (`nginx -t` on deploy/nginx.conf)
#     KAILASH_TEST_KUBECTL        kubectl with `kustomize` (builds the k8s overlays)
#     KAILASH_TEST_KUBE_VALIDATE  kubernetes-validate from PyPI (Kubernetes JSON schemas
#                                 bundled in the package: validation needs no network)
#
# nginx and kubectl come from Debian's packages (nginx-light, kubernetes-client) unless
# already on PATH; kubernetes-validate goes into the given Python venv.

KUBERNETES_VALIDATE_VERSION=1.37.0

deploy_tools_ensure() {
    local venv="$1"
    local nginx
    nginx="$(command -v nginx || true)"
    [ -n "$nginx" ] || [ ! -x /usr/sbin/nginx ] || nginx=/usr/sbin/nginx
    if [ -z "$nginx" ]; then
        svc_apt_install nginx-light
        nginx=/usr/sbin/nginx
    fi
    command -v kubectl >/dev/null 2>&1 || svc_apt_install kubernetes-client
    if ! "$venv/bin/python3" -m pip show kubernetes-validate 2>/dev/null |
        grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; then
        svc_log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
        "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
            svc_die "pip install kubernetes-validate failed"
    fi
    export KAILASH_TEST_NGINX="$nginx"
    KAILASH_TEST_KUBECTL="$(command -v kubectl)"
    export KAILASH_TEST_KUBECTL
    export KAILASH_TEST_KUBE_VALIDATE="$venv/bin/kubernetes-validate"
}
