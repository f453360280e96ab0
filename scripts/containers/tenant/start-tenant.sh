#!/bin/sh
# Starts MariaDB and Apache the way KSM_TENANT_START says, then waits:
#   sysv     the lines of `ksm snippet sysv` (mounted at /ksm/snippet-sysv.sh) go into
#            /etc/init.d/mariadb and /etc/apache2/envvars, and the init scripts start both;
#   ksm-run  `ksm run` (the package mounted at /ksm/package, node at /ksm/node) starts both;
#   none     the init scripts start both without merging.
set -eu
case "${KSM_TENANT_START:-none}" in
  sysv)
    sed -i '/^### END INIT INFO/r /ksm/snippet-sysv.sh' /etc/init.d/mariadb
    grep -q LD_PRELOAD /etc/init.d/mariadb
    cat /ksm/snippet-sysv.sh >> /etc/apache2/envvars
    /etc/init.d/mariadb start
    /etc/init.d/apache2 start
    ;;
  ksm-run)
    /ksm/node /ksm/package/bin/ksm.js run -- /etc/init.d/mariadb start
    /ksm/node /ksm/package/bin/ksm.js run -- /etc/init.d/apache2 start
    ;;
  none)
    /etc/init.d/mariadb start
    /etc/init.d/apache2 start
    ;;
  *)
    echo "KSM_TENANT_START must be sysv, ksm-run or none" >&2
    exit 2
    ;;
esac
echo "tenant ready"
exec sleep infinity
