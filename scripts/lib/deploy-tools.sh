# shellcheck shell=bash
# scripts/lib/deploy-tools.sh — the offline validators the deployment tests use, installed
# when missing (sourced after scripts/lib/services.sh by scripts/test.sh, and by
# deploy/local-cluster.sh for nginx alone):
#
#   deploy_tools_ensure_nginx  sets DEPLOY_NGINX to the nginx binary
#   deploy_tools_ensure VENV   exports
#     KAILASH_TEST_NGINX          nginx binary (`nginx -t` on deploy/nginx.conf)
#     KAILASH_TEST_KUBECTL        kubectl with `kustomize` (builds the k8s overlays)
#     KAILASH_TEST_KUBE_VALIDATE  kubernetes-validate from PyPI (Kubernetes JSON schemas
#                                 bundled in the package: validation needs no network)
#
# nginx and kubectl come from Debian's packages (nginx-light, kubernetes-client) unless
# already on PATH; kubernetes-validate goes into the given Python venv.

KUBERNETES_VALIDATE_VERSION=1.37.0

deploy_tools_ensure_nginx() {
    DEPLOY_NGINX="$(command -v nginx || true)"
    # /usr/sbin is not on every user's PATH.
    [ -n "$DEPLOY_NGINX" ] || [ ! -x /usr/sbin/nginx ] || DEPLOY_NGINX=/usr/sbin/nginx
    if [ -z "$DEPLOY_NGINX" ]; then
        svc_apt_install nginx-light
        DEPLOY_NGINX=/usr/sbin/nginx
    fi
}

deploy_tools_ensure() {
    local venv="$1"
    deploy_tools_ensure_nginx
    command -v kubectl >/dev/null 2>&1 || svc_apt_install kubernetes-client
    if ! "$venv/bin/python3" -m pip show kubernetes-validate 2>/dev/null |
        grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; then
        svc_log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
        "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
            svc_die "pip install kubernetes-validate failed"
    fi
    export KAILASH_TEST_NGINX="$DEPLOY_NGINX"
    KAILASH_TEST_KUBECTL="$(command -v kubectl)"
    export KAILASH_TEST_KUBECTL
    export KAILASH_TEST_KUBE_VALIDATE="$venv/bin/kubernetes-validate"
}
