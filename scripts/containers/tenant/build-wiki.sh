#!/bin/sh
# Installs the wiki into MariaDB and imports the generated pages, once, at image
# build time: every tenant then starts from the same database files.
set -eu
pages=${KSM_TENANT_PAGES:-300}
/etc/init.d/mariadb start
mariadb -e "CREATE DATABASE wiki; CREATE USER 'wiki'@'localhost' IDENTIFIED BY 'wiki'; GRANT ALL ON wiki.* TO 'wiki'@'localhost';"
php /usr/share/mediawiki/maintenance/install.php --dbtype=mysql --dbserver=localhost --dbname=wiki \
  --dbuser=wiki --dbpass=wiki --server=http://127.0.0.1 --scriptpath=/mediawiki --lang=en \
  --pass=tenant-admin-password --confpath=/etc/mediawiki 'Tenant Wiki' Admin
php /usr/local/lib/ksm-tenant/generate-pages.php "$pages" > /tmp/pages.xml
php /usr/share/mediawiki/maintenance/importDump.php --no-updates /tmp/pages.xml
php /usr/share/mediawiki/maintenance/rebuildall.php
php /usr/share/mediawiki/maintenance/initSiteStats.php --update
rm /tmp/pages.xml
/etc/init.d/mariadb stop
a2enconf mediawiki
# Quiet starts: a fixed server name, and no `ulimit -n` that the container may not raise.
echo 'ServerName localhost' > /etc/apache2/conf-available/servername.conf
a2enconf servername
echo 'APACHE_ULIMIT_MAX_FILES=true' >> /etc/apache2/envvars
