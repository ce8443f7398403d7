#!/bin/bash
# InfluxDB 2 init hook: map the InfluxQL database "gridverse" to the bucket, for gridverse's reads.
set -e
bucket_id=$(influx bucket find --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create --bucket-id "${bucket_id}" --db gridverse --rp autogen --default
