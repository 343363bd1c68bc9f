"""Every view a person looks at that is not a terminal: the Grafana dashboards (:mod:`.grafana`,
generated JSON in ``grafana/``, provisioning files in ``provisioning/``) and the HTML execution
cinema (:mod:`.html_cinema`), rendered from ``templates/``. Both read the store only through
:mod:`execscope.queries`."""
