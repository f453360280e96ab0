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
a2enconf mediawiki
# Quiet starts: a fixed server name, and no `ulimit -n` that the container may not raise.
echo 'ServerName localhost' > /etc/apache2/conf-available/servername.conf
a2enconf servername
echo 'APACHE_ULIMIT_MAX_FILES=true' >> /etc/apache2/envvars
# A fixed pool of six mod_php children, so a tenant's memory does not follow the load.
cat > /etc/apache2/mods-available/mpm_prefork.conf <<'CONF'
<IfModule mpm_prefork_module>
	StartServers		6
	MinSpareServers		1
	MaxSpareServers		6
	ServerLimit		6
	MaxRequestWorkers	6
	MaxConnectionsPerChild	0
</IfModule>
CONF
# Render every page once into the parser cache (in the database), kept for years, so
# a tenant's page views cost what a warm wiki's do, however old the image is. Under ten
# years: MediaWiki's object cache takes an expiry of ten years or more for a point in
# time (seconds since 1970), which has passed, and would render every view anew.
echo '$wgParserCacheExpireTime = 5 * 365 * 86400;' >> /etc/mediawiki/LocalSettings.php
# Page views comparable byte for byte across runs: no parser timing report in the
# HTML, and the request id the client sends instead of a random one.
echo '$wgEnableParserLimitReporting = false;' >> /etc/mediawiki/LocalSettings.php
echo '$wgAllowExternalReqID = true;' >> /etc/mediawiki/LocalSettings.php
/etc/init.d/apache2 start
php -r 'for ($i = 1; $i <= (int)$argv[1]; $i++) { if (file_get_contents("http://127.0.0.1/mediawiki/index.php?title=Page_$i") === false) exit(1); }' "$pages"
/etc/init.d/apache2 stop
/etc/init.d/mariadb stop
