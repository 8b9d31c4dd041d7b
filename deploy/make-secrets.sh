#!/bin/sh
# Generates what deploy/docker-compose.yml requires, next to this script:
#   .env              random PostgreSQL password, S3 keys and UI key (mode 600)
#   secrets/htpasswd  one user (bcrypt), the admin, whose password is printed once
# Usage: deploy/make-secrets.sh [admin-user]      (default user name: admin)
# It never overwrites: remove .env and secrets/htpasswd first to start again.
# Add users later with `htpasswd -B deploy/secrets/htpasswd NAME` (or `ociregistry
# user add --htpasswd deploy/secrets/htpasswd NAME`): the registry re-reads the file.
set -eu
cd "$(dirname "$0")"
admin=${1:-admin}
for file in .env secrets/htpasswd; do
    if [ -e "$file" ]; then
        echo "$(pwd)/$file exists: not overwritten" >&2
        exit 1
    fi
done
command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 1; }
random() { openssl rand -hex "$1"; }
password=$(random 16)

mkdir -p secrets
if command -v htpasswd >/dev/null; then
    printf '%s\n' "$password" | htpasswd -iBc secrets/htpasswd "$admin" 2>/dev/null
elif command -v ociregistry >/dev/null; then
    printf '%s\n' "$password" | ociregistry user add --htpasswd secrets/htpasswd \
        --password-stdin "$admin" >/dev/null
else
    echo "htpasswd (apache2-utils) or ociregistry is needed to write secrets/htpasswd" >&2
    exit 1
fi
# Read by the registry's user (uid 10001) through a bind mount: bcrypt hashes only.
chmod 644 secrets/htpasswd

umask 077
cat > .env <<END
POSTGRES_PASSWORD=$(random 24)
S3_ACCESS_KEY=registry-$(random 8)
S3_SECRET_KEY=$(random 24)
REGISTRY_UI_SECRET_KEY=$(random 32)
REGISTRY_HTPASSWD_FILE=./secrets/htpasswd
REGISTRY_ADMIN=$admin
END
echo "wrote $(pwd)/.env and $(pwd)/secrets/htpasswd"
echo "sign in as: $admin  password: $password"
