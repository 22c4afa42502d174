// SPDX-License-Identifier: MIT
/* Checks of a Prometheus text exposition, for the metrics tests. */
#ifndef NORI_TEST_METRICS_CHECKS_H
#define NORI_TEST_METRICS_CHECKS_H

#include <stdint.h>

/* Fails the test unless `text` follows the format's rules: every sample
 * belongs to the family announced by the HELP and TYPE lines before it, no
 * family appears twice, counters end in _total, label values are quoted,
 * histogram buckets are cumulative and end with le="+Inf" equal to _count. */
void metrics_check_text(const char *text);

/* Fails the test unless `promtool check metrics` accepts `text` without a
 * single complaint (promtool comes with Debian's prometheus package; its
 * absence fails the test). */
void metrics_check_promtool(const char *text);

/* The value of the sample whose name and labels are exactly `series`
 * (e.g. "nori_cache_hits_total" or "x_total{a=\"b\"}"), or -1 if absent. */
int64_t metrics_value(const char *text, const char *series);

#endif
