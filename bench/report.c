/* report.c - the table and the JSON document. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench/report.h"
#include "libclient/gpuq.h"

static const char *const status_names[] = {
	[ST_NOTRUN] = "not run", [ST_OK] = "ok", [ST_ERROR] = "error",
	[ST_NA] = "not available", [ST_SKIPPED] = "skipped",
};

/* The CDF points kept in the JSON, in ppm. */
static const uint32_t cdf_ppm[] = { 0, 100000, 250000, 500000, 750000,
				    900000, 950000, 990000, 995000, 999000,
				    999500, 999900, 1000000 };

void report_machine(struct bench_info *bi)
{
	struct utsname u;
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	snprintf(bi->cpu, sizeof(bi->cpu), "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');
		if (strncmp(line, "model name", 10) || !c)
			continue;
		snprintf(bi->cpu, sizeof(bi->cpu), "%s", c + 2);
		bi->cpu[strcspn(bi->cpu, "\n")] = 0;
		break;
	}
	if (f)
		fclose(f);
	bi->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (!uname(&u))
		snprintf(bi->kernel, sizeof(bi->kernel), "%.30s %.60s", u.sysname, u.release);
}

static const char *mode_of(const struct workload *w, char *buf, size_t cap)
{
	if (w->rate > 0)
		snprintf(buf, cap, "open loop at %.0f msg/s", w->rate);
	else
		snprintf(buf, cap, "closed loop");
	return buf;
}

/* "25.62 M" style, 7 characters plus unit. */
static const char *si(double v, char *buf, size_t cap)
{
	if (v >= 1e9)
		snprintf(buf, cap, "%7.2f G", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, cap, "%7.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, cap, "%7.2f k", v / 1e3);
	else
		snprintf(buf, cap, "%7.0f  ", v);
	return buf;
}

static double us(const struct hist *h, uint32_t ppm)
{
	return (double)hist_value_at_ppm(h, ppm) / 1e3;
}

static void runs_line(FILE *f, const struct sys_result *r)
{
	double lo = r->run_rates[0], hi = lo;
	for (int i = 1; i < r->runs; i++) {
		lo = r->run_rates[i] < lo ? r->run_rates[i] : lo;
		hi = r->run_rates[i] > hi ? r->run_rates[i] : hi;
	}
	fprintf(f, "       median of %d runs, %.3g to %.3g msg/s; latency over all\n",
		r->runs, lo, hi);
}

static void text_row(FILE *f, const struct sys_result *r, const struct workload *w)
{
	char a[32];
	if (r->status != ST_OK) {
		fprintf(f, "%-6s %s%s%s\n", sys_names[r->sys],
			status_names[r->status], r->reason[0] ? ": " : "", r->reason);
		return;
	}
	fprintf(f, "%-6s %s %9.1f", sys_names[r->sys], si(r->rate, a, sizeof(a)),
		r->rate * w->size / 1e6);
	if (r->lat && r->lat->count)
		fprintf(f, " %8.1f %8.1f %8.1f %8.1f %9.1f", us(r->lat, 500000),
			us(r->lat, 900000), us(r->lat, 990000), us(r->lat, 999000),
			(double)r->lat->max / 1e3);
	else
		fprintf(f, " %8s %8s %8s %8s %9s", "-", "-", "-", "-", "-");
	/* Open loop: every system carries the offered rate, so compare tail
	 * latency instead. */
	if ((w->rate > 0 ? r->p99_ratio : r->ratio) > 0)
		fprintf(f, " %8.2f", w->rate > 0 ? r->p99_ratio : r->ratio);
	else
		fprintf(f, " %8s", "-");
	fprintf(f, " %9.1f\n", r->setup_us_max / 1e3);
	if (r->runs > 1)
		runs_line(f, r);
	if (r->failed)
		fprintf(f, "       %llu failed (%.3f%% of results)\n",
			(unsigned long long)r->failed,
			100.0 * (double)r->failed / (double)(r->messages ? r->messages : 1));
}

static void per_process(FILE *f, const struct sys_result *r)
{
	for (int i = 0; i < r->producers; i++) {
		const struct proc_result *p = &r->proc[i];
		double rate = p->seconds > 0 ? (double)(p->verified + p->bad) / p->seconds : 0;
		if (r->sys == SYS_GPUQ)
			fprintf(f, "  producer %2d: %10.0f msg/s", i, rate);
		else
			fprintf(f, "  %s producer %2d: %10.0f msg/s", sys_names[r->sys], i, rate);
		if (p->rc)
			fprintf(f, "  error: %s %s", gpuq_strerror(p->rc), p->what);
		fputc('\n', f);
	}
}

static void header(FILE *f, const struct bench_info *bi)
{
	fprintf(f, "gpuq-bench %s: queue %s (handler %s, %s backend, %u B slots), "
		"%s, %d CPUs\n", gpuq_version(), bi->queue, bi->handler,
		bi->backend, bi->slot_bytes, bi->cpu, bi->cpus);
}

/* "gpuq x": gpuq's rate over this one's; "p99 x": this one's p99 over
 * gpuq's. */
static void table_head(FILE *f, const struct workload *w)
{
	fprintf(f, "%-6s %9s %9s %8s %8s %8s %8s %9s %8s %9s\n", "system",
		"msg/s", "MB/s", "p50 us", "p90 us", "p99 us", "p99.9 us",
		"max us", w->rate > 0 ? "p99 x" : "gpuq x", "setup ms");
}

static const char *length_of(const struct workload *w, char *buf, size_t cap)
{
	if (w->count)
		snprintf(buf, cap, "%llu msgs", (unsigned long long)w->count);
	else
		snprintf(buf, cap, "%.1f s", w->duration_s);
	return buf;
}

void report_text_single(FILE *f, const struct bench_info *bi,
			const struct point *p)
{
	const struct workload *w = &p->w;
	const struct sys_result *g = &p->res[SYS_GPUQ];
	char m[64], l[32];
	header(f, bi);
	fprintf(f, "queue %s: %d producers x %s of %u B, batch %u, window %u%s, %s\n",
		w->queue, w->producers, length_of(w, l, sizeof(l)), w->size,
		w->batch, w->window, w->zero_copy ? ", zero-copy" : "",
		mode_of(w, m, sizeof(m)));
	table_head(f, w);
	for (int s = 0; s < SYS_COUNT; s++)
		if (p->res[s].status != ST_NOTRUN)
			text_row(f, &p->res[s], w);
	for (int s = 0; s < SYS_COUNT; s++)
		if (p->res[s].status == ST_OK || p->res[s].status == ST_ERROR)
			per_process(f, &p->res[s]);
	if (w->fail_rate > 0 && g->status == ST_OK && !g->failed)
		fprintf(f, "warning: --fail-rate %g but no message failed: is fault "
			"injection configured on queue %s?\n", w->fail_rate, w->queue);
	/* The last two lines keep the format scripts already read. */
	fprintf(f, "aggregate: %.3f M msg/s, %.2f GB/s payload, %llu completed in %.3f s%s\n",
		g->rate / 1e6, g->rate * w->size / 1e9,
		(unsigned long long)g->messages, g->seconds,
		g->status == ST_OK ? "" : "  (ERRORS)");
	fprintf(f, "attach (connect + open): slowest producer %.0f us\n",
		g->setup_us_max);
}

static const char *section_title(const char *s)
{
	if (!strcmp(s, "payload"))
		return "throughput against payload size";
	if (!strcmp(s, "producers"))
		return "scaling with producers";
	if (!strcmp(s, "batch"))
		return "throughput against batch size";
	if (!strcmp(s, "latency"))
		return "latency, open loop";
	return "handler failure rate (gpuq only)";
}

static void section_row(FILE *f, const struct point *p, const char *section)
{
	const struct sys_result *g = &p->res[SYS_GPUQ];
	char a[32];
	if (!strcmp(section, "failure"))
		fprintf(f, "%8.2f%% ", p->x * 100);
	else
		fprintf(f, "%9.0f ", p->x);
	for (int s = 0; s < SYS_COUNT; s++) {
		const struct sys_result *r = &p->res[s];
		if (r->status == ST_NOTRUN)
			continue;
		if (r->status != ST_OK)
			fprintf(f, "| %-18.18s ", status_names[r->status]);
		else if (s == SYS_GPUQ)
			fprintf(f, "| %s %8s ", si(r->rate, a, sizeof(a)), "");
		else
			fprintf(f, "| %s %7.1fx ", si(r->rate, a, sizeof(a)), r->ratio);
	}
	if (!strcmp(section, "failure"))
		fprintf(f, "| %.3f%% failed", 100.0 * (double)g->failed /
			(double)(g->messages ? g->messages : 1));
	fputc('\n', f);
}

static void latency_table(FILE *f, const struct point *p)
{
	table_head(f, &p->w);
	for (int s = 0; s < SYS_COUNT; s++)
		if (p->res[s].status != ST_NOTRUN)
			text_row(f, &p->res[s], &p->w);
}

/* The fixed parameters of a section: all but the one it varies. */
static void section_head(FILE *f, const struct point *p, const char *section)
{
	char m[64], l[32];
	fprintf(f, "\n== %s: %s (", section, section_title(section));
	if (strcmp(section, "producers"))
		fprintf(f, "%d producer%s, ", p->w.producers, p->w.producers > 1 ? "s" : "");
	if (strcmp(section, "payload"))
		fprintf(f, "%u B, ", p->w.size);
	if (strcmp(section, "batch"))
		fprintf(f, "batch %u, ", p->w.batch);
	fprintf(f, "window %u, %s, %s each)\n", p->w.window,
		mode_of(&p->w, m, sizeof(m)), length_of(&p->w, l, sizeof(l)));
}

/* Why a cell says error, skipped or not available (once per system for
 * the last two). */
static void notes(FILE *f, const struct point *pts, int n, const char *section)
{
	int said[SYS_COUNT] = { 0 };
	for (int i = 0; i < n; i++) {
		if (strcmp(pts[i].section, section))
			continue;
		for (int s = 0; s < SYS_COUNT; s++) {
			const struct sys_result *r = &pts[i].res[s];
			if (r->status == ST_OK || r->status == ST_NOTRUN ||
			    (r->status != ST_ERROR && said[s]))
				continue;
			said[s] = 1;
			fprintf(f, "  %s", sys_names[s]);
			if (r->status == ST_ERROR)
				fprintf(f, " at %g", pts[i].x);
			fprintf(f, ": %s: %s\n", status_names[r->status], r->reason);
		}
	}
}

void report_text_section(FILE *f, const struct bench_info *bi,
			 const struct point *pts, int n, const char *section)
{
	const struct point *first = NULL;
	(void)bi;
	for (int i = 0; i < n && !first; i++)
		if (!strcmp(pts[i].section, section))
			first = &pts[i];
	if (!first)
		return;
	section_head(f, first, section);
	if (!strcmp(section, "latency")) {
		latency_table(f, first);
		return;
	}
	fprintf(f, "%9s ", !strcmp(section, "failure") ? "fail rate" : section);
	for (int s = 0; s < SYS_COUNT; s++)
		if (first->res[s].status != ST_NOTRUN)
			fprintf(f, "| %-6s msg/s %6s ", sys_names[s], s ? "gpuq x" : "");
	fputc('\n', f);
	for (int i = 0; i < n; i++)
		if (!strcmp(pts[i].section, section))
			section_row(f, &pts[i], section);
	notes(f, pts, n, section);
}

/* ---- JSON ---- */

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_latency(FILE *f, const struct hist *h)
{
	fprintf(f, "\"latency_ns\":{\"count\":%llu,\"min\":%llu,\"mean\":%.0f,"
		"\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu,"
		"\"cdf\":[", (unsigned long long)h->count,
		(unsigned long long)(h->count ? h->min : 0), hist_mean(h),
		(unsigned long long)hist_value_at_ppm(h, 500000),
		(unsigned long long)hist_value_at_ppm(h, 900000),
		(unsigned long long)hist_value_at_ppm(h, 990000),
		(unsigned long long)hist_value_at_ppm(h, 999000),
		(unsigned long long)h->max);
	for (size_t i = 0; i < sizeof(cdf_ppm) / sizeof(cdf_ppm[0]); i++)
		fprintf(f, "%s[%.4f,%llu]", i ? "," : "", cdf_ppm[i] / 1e4,
			(unsigned long long)(cdf_ppm[i] || !h->count
						     ? hist_value_at_ppm(h, cdf_ppm[i])
						     : h->min));
	fprintf(f, "]},");
}

static void json_procs(FILE *f, const struct sys_result *r)
{
	fprintf(f, "\"processes\":[");
	for (int i = 0; i < r->producers + r->helpers; i++) {
		const struct proc_result *p = &r->proc[i];
		uint64_t m = p->verified + p->bad;
		fprintf(f, "%s{\"role\":\"%s\",\"idx\":%d,\"messages\":%llu,"
			"\"failed\":%llu,\"bad\":%llu,\"seconds\":%.6f,"
			"\"msgs_per_s\":%.0f,\"setup_us\":%.1f,\"rc\":%d,\"error\":",
			i ? "," : "", i < r->producers ? "producer" : "helper", i,
			(unsigned long long)m, (unsigned long long)p->failed,
			(unsigned long long)p->bad, p->seconds,
			p->seconds > 0 && i < r->producers ? (double)m / p->seconds : 0,
			p->attach_us, p->rc);
		jstr(f, p->rc ? p->what : "");
		fputc('}', f);
	}
	fprintf(f, "]");
}

static void json_result(FILE *f, const struct sys_result *r, const struct workload *w)
{
	fprintf(f, "{\"system\":\"%s\",\"status\":\"%s\",\"reason\":",
		sys_names[r->sys], status_names[r->status]);
	jstr(f, r->reason);
	if (r->status != ST_OK && r->status != ST_ERROR) {
		fputc('}', f);
		return;
	}
	fprintf(f, ",\"messages\":%llu,\"failed\":%llu,\"bad\":%llu,\"seconds\":%.6f,"
		"\"msgs_per_s\":%.0f,\"bytes_per_s\":%.0f,\"setup_us_max\":%.1f,"
		"\"gpuq_x\":%.4f,\"p50_x\":%.4f,\"p99_x\":%.4f,",
		(unsigned long long)r->messages, (unsigned long long)r->failed,
		(unsigned long long)r->bad, r->seconds, r->rate, r->rate * w->size,
		r->setup_us_max, r->ratio, r->p50_ratio, r->p99_ratio);
	fprintf(f, "\"runs\":%d,\"run_msgs_per_s\":[", r->runs);
	for (int i = 0; i < r->runs; i++)
		fprintf(f, "%s%.0f", i ? "," : "", r->run_rates[i]);
	fprintf(f, "],");
	if (r->lat)
		json_latency(f, r->lat);
	json_procs(f, r);
	fputc('}', f);
}

static void json_workload(FILE *f, const struct workload *w)
{
	fprintf(f, "\"producers\":%d,\"payload_bytes\":%u,\"batch\":%u,\"window\":%u,"
		"\"zero_copy\":%d,\"mode\":\"%s\",\"rate_offered\":%.0f,"
		"\"count\":%llu,\"duration_s\":%.3f,\"warmup\":%llu,\"fail_rate\":%g,",
		w->producers, w->size, w->batch, w->window, w->zero_copy,
		w->rate > 0 ? "open" : "closed", w->rate,
		(unsigned long long)w->count, w->duration_s,
		(unsigned long long)w->warmup, w->fail_rate);
}

static void json_point(FILE *f, const struct point *p)
{
	int first = 1;
	fprintf(f, "{\"section\":\"%s\",\"x\":%g,", p->section, p->x);
	json_workload(f, &p->w);
	fprintf(f, "\"results\":[");
	for (int s = 0; s < SYS_COUNT; s++) {
		if (p->res[s].status == ST_NOTRUN)
			continue;
		if (!first)
			fputc(',', f);
		first = 0;
		json_result(f, &p->res[s], &p->w);
	}
	fprintf(f, "]}");
}

/* The single-point fields of the first gpuq-bench, kept for scripts. */
static void json_legacy(FILE *f, const struct point *p)
{
	const struct sys_result *g = &p->res[SYS_GPUQ];
	fprintf(f, "\"messages\":%llu,\"seconds\":%.6f,\"msgs_per_s\":%.0f,"
		"\"bytes_per_s\":%.0f,\"failed\":%llu,\"attach_us_max\":%.1f,"
		"\"ok\":%s,", (unsigned long long)g->messages, g->seconds, g->rate,
		g->rate * p->w.size, (unsigned long long)g->failed,
		g->setup_us_max, g->status == ST_OK ? "true" : "false");
	if (g->lat)
		json_latency(f, g->lat);
	json_workload(f, &p->w);
}

void report_json(FILE *f, const struct bench_info *bi, const struct point *pts,
		 int n)
{
	int ok = 1;
	fprintf(f, "{\"tool\":\"gpuq-bench\",\"version\":\"%s\",\"queue\":",
		gpuq_version());
	jstr(f, bi->queue);
	fprintf(f, ",\"handler\":\"%s\",\"backend\":\"%s\",\"slot_bytes\":%u,"
		"\"capacity\":%u,\"cq_capacity\":%u,\"machine\":{\"cpu\":",
		bi->handler, bi->backend, bi->slot_bytes, bi->capacity,
		bi->cq_capacity);
	jstr(f, bi->cpu);
	fprintf(f, ",\"cpus\":%d,\"kernel\":", bi->cpus);
	jstr(f, bi->kernel);
	fprintf(f, "},\"command\":");
	jstr(f, bi->cmdline);
	fprintf(f, ",\"redis\":");
	jstr(f, bi->redis ? bi->redis : "");
	fputc(',', f);
	if (bi->single && n == 1)
		json_legacy(f, &pts[0]);
	fprintf(f, "\"points\":[");
	for (int i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_point(f, &pts[i]);
		for (int s = 0; s < SYS_COUNT; s++)
			ok &= pts[i].res[s].status != ST_ERROR;
	}
	fprintf(f, "],\"all_ok\":%s}\n", ok ? "true" : "false");
}
