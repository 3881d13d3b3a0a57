/*
 * svg.c - the plots, as hand-written SVG (no plotting dependency):
 * throughput against payload size, the latency CDF, and scaling with
 * producers.  Each panel has a log-scale value axis, since gpuq and the
 * baselines differ by orders of magnitude.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/report.h"

#define W 900
#define PH 330   /* panel height */
#define ML 90    /* margins: left, right (legend), top, bottom */
#define MR 170
#define MT 46
#define MB 52
#define MAXPTS 64
#define NINES 5  /* the CDF's y axis ends at 99.999% */

static const char *const colors[SYS_COUNT] = { "#1f77b4", "#ff7f0e",
					       "#d62728", "#2ca02c" };

struct series {
	int n;
	double x[MAXPTS], y[MAXPTS];
};

struct axis {
	double lo, hi; /* in plotted units (log10 for log axes) */
	int log;
};

static double ax_pos(const struct axis *a, double v, double from, double to)
{
	double u = a->log ? log10(v) : v;
	return from + (u - a->lo) / (a->hi - a->lo) * (to - from);
}

static void si_label(char *buf, size_t cap, double v)
{
	if (v >= 1e9)
		snprintf(buf, cap, "%gG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, cap, "%gM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, cap, "%gk", v / 1e3);
	else
		snprintf(buf, cap, "%g", v);
}

/* Decades that cover [mn, mx]. */
static struct axis log_axis(double mn, double mx)
{
	struct axis a = { floor(log10(mn)), ceil(log10(mx)), 1 };
	if (a.hi <= a.lo)
		a.hi = a.lo + 1;
	return a;
}

static void frame(FILE *f, int y0, const char *title, const char *xlabel,
		  const char *ylabel)
{
	fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' "
		"stroke='#444'/>\n", ML, y0 + MT, W - ML - MR, PH - MT - MB);
	fprintf(f, "<text x='%d' y='%d' font-size='15' font-weight='bold'>%s</text>\n",
		ML, y0 + 26, title);
	fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>%s</text>\n",
		ML + (W - ML - MR) / 2, y0 + PH - 12, xlabel);
	fprintf(f, "<text x='18' y='%d' text-anchor='middle' transform='rotate(-90 18 %d)'>"
		"%s</text>\n", y0 + PH / 2, y0 + PH / 2, ylabel);
}

static void y_log_ticks(FILE *f, int y0, const struct axis *a)
{
	for (double d = a->lo; d <= a->hi + 1e-9; d++) {
		double y = ax_pos(a, pow(10, d), y0 + PH - MB, y0 + MT);
		char lab[16];
		si_label(lab, sizeof(lab), pow(10, d));
		fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/>\n",
			ML, W - MR, y, y);
		fprintf(f, "<text x='%d' y='%.1f' text-anchor='end'>%s</text>\n",
			ML - 6, y + 4, lab);
	}
}

static void legend(FILE *f, int y0, int i, int sys)
{
	int y = y0 + MT + 12 + 20 * i;
	fprintf(f, "<line x1='%d' x2='%d' y1='%d' y2='%d' stroke='%s' "
		"stroke-width='3'/>\n", W - MR + 14, W - MR + 40, y, y, colors[sys]);
	fprintf(f, "<text x='%d' y='%d'>%s</text>\n", W - MR + 46, y + 4,
		sys_names[sys]);
}

/* Systems asked for that have no line, and why, under the legend. */
static void legend_missing(FILE *f, int y0, int li, const struct point *p)
{
	static const char *const why[] = { [ST_ERROR] = "error",
					   [ST_NA] = "not available",
					   [ST_SKIPPED] = "skipped" };
	for (int k = 0; k < SYS_COUNT; k++) {
		int st = p->res[k].status;
		if (st == ST_NOTRUN || st == ST_OK)
			continue;
		fprintf(f, "<text x='%d' y='%d' fill='#888'>%s: %s</text>\n",
			W - MR + 14, y0 + MT + 16 + 20 * li++, sys_names[k], why[st]);
	}
}

static void polyline(FILE *f, int sys, const double *px, const double *py,
		     int n, int marks)
{
	fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='",
		colors[sys]);
	for (int i = 0; i < n; i++)
		fprintf(f, "%.1f,%.1f ", px[i], py[i]);
	fprintf(f, "'/>\n");
	for (int i = 0; marks && i < n; i++)
		fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
			px[i], py[i], colors[sys]);
}

/* Throughput of each system at each point of a section. */
static int gather(const struct point *pts, int n, const char *section,
		  struct series *s, double *xs, int *nx, double *mn, double *mx)
{
	int any = 0;
	*nx = 0;
	memset(s, 0, sizeof(*s) * SYS_COUNT);
	for (int i = 0; i < n && *nx < MAXPTS; i++) {
		if (strcmp(pts[i].section, section))
			continue;
		xs[(*nx)++] = pts[i].x;
		for (int k = 0; k < SYS_COUNT; k++) {
			const struct sys_result *r = &pts[i].res[k];
			if (r->status != ST_OK || r->rate <= 0)
				continue;
			s[k].x[s[k].n] = *nx - 1;
			s[k].y[s[k].n++] = r->rate;
			*mn = r->rate < *mn ? r->rate : *mn;
			*mx = r->rate > *mx ? r->rate : *mx;
			any = 1;
		}
	}
	return any;
}

/* A throughput panel; x is categorical (the section's values in order). */
static int rate_panel(FILE *f, int y0, const struct point *pts, int n,
		      const char *section, const char *title, const char *xlabel)
{
	struct series s[SYS_COUNT];
	double xs[MAXPTS], mn = 1e300, mx = 0;
	int nx, li = 0;
	struct axis a;
	if (!gather(pts, n, section, s, xs, &nx, &mn, &mx))
		return 0;
	a = log_axis(mn, mx);
	frame(f, y0, title, xlabel, "messages/s (log)");
	y_log_ticks(f, y0, &a);
	for (int i = 0; i < nx; i++) {
		double x = nx > 1 ? ML + 30 + i * (W - ML - MR - 60.0) / (nx - 1)
				  : ML + (W - ML - MR) / 2.0;
		fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%g</text>\n",
			x, y0 + PH - MB + 18, xs[i]);
	}
	for (int k = 0; k < SYS_COUNT; k++) {
		double px[MAXPTS], py[MAXPTS];
		if (!s[k].n)
			continue;
		for (int i = 0; i < s[k].n; i++) {
			px[i] = nx > 1 ? ML + 30 + s[k].x[i] * (W - ML - MR - 60.0) / (nx - 1)
				       : ML + (W - ML - MR) / 2.0;
			py[i] = ax_pos(&a, s[k].y[i], y0 + PH - MB, y0 + MT);
		}
		polyline(f, k, px, py, s[k].n, 1);
		legend(f, y0, li++, k);
	}
	for (int i = 0; i < n; i++)
		if (!strcmp(pts[i].section, section)) {
			legend_missing(f, y0, li, &pts[i]);
			break;
		}
	return 1;
}

/* CDF y: the number of nines of a fraction, so tails get room. */
static double nines(double q)
{
	if (q >= 1 - 1e-5)
		return NINES;
	return -log10(1 - q);
}

static void cdf_ticks(FILE *f, int y0, const struct axis *xa)
{
	static const char *const lab[] = { "0%", "90%", "99%", "99.9%",
					   "99.99%", "99.999%" };
	for (int k = 0; k <= NINES; k++) {
		double y = y0 + PH - MB - k * (PH - MT - MB) / (double)NINES;
		fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/>\n",
			ML, W - MR, y, y);
		fprintf(f, "<text x='%d' y='%.1f' text-anchor='end'>%s</text>\n",
			ML - 6, y + 4, lab[k]);
	}
	for (double d = xa->lo; d <= xa->hi + 1e-9; d++) {
		double x = ax_pos(xa, pow(10, d), ML, W - MR);
		char l[16];
		si_label(l, sizeof(l), pow(10, d));
		fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#ddd'/>\n",
			x, x, y0 + MT, y0 + PH - MB);
		fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%s</text>\n",
			x, y0 + PH - MB + 18, l);
	}
}

static void cdf_line(FILE *f, int y0, int sys, const struct hist *h,
		     const struct axis *xa)
{
	static double px[HIST_BUCKETS + 1], py[HIST_BUCKETS + 1];
	uint32_t pos = 0;
	uint64_t v, cum = 0;
	int n = 0;
	double us0 = h->min > 0 ? (double)h->min / 1e3 : 1e-3;
	px[n] = ax_pos(xa, us0, ML, W - MR);
	py[n++] = y0 + PH - MB;
	while (hist_next(h, &pos, &v, &cum)) {
		double q = (double)cum / (double)h->count, y = nines(q);
		px[n] = ax_pos(xa, v > 0 ? (double)v / 1e3 : 1e-3, ML, W - MR);
		py[n] = y0 + PH - MB - y * (PH - MT - MB) / NINES;
		/* Keep a point only where it moves the line by a third of a
		 * pixel; the last one is always kept. */
		if (n < 2 || fabs(px[n] - px[n - 1]) > 0.3 ||
		    fabs(py[n] - py[n - 1]) > 0.3 || cum == h->count)
			n++;
	}
	polyline(f, sys, px, py, n, 0);
}

static int cdf_panel(FILE *f, int y0, const struct point *p)
{
	double mn = 1e300, mx = 0;
	struct axis xa;
	int li = 0;
	char title[160];
	for (int k = 0; k < SYS_COUNT; k++) {
		const struct hist *h = p->res[k].lat;
		if (p->res[k].status != ST_OK || !h || !h->count)
			continue;
		mn = fmin(mn, h->min > 0 ? (double)h->min / 1e3 : 1e-3);
		mx = fmax(mx, (double)h->max / 1e3);
	}
	if (mx <= 0)
		return 0;
	xa = log_axis(mn, mx);
	snprintf(title, sizeof(title), "Latency CDF: %d producer%s, %u B, batch %u, %s",
		 p->w.producers, p->w.producers > 1 ? "s" : "", p->w.size, p->w.batch,
		 p->w.rate > 0 ? "open loop" : "closed loop");
	if (p->w.rate > 0)
		snprintf(title + strlen(title), sizeof(title) - strlen(title),
			 " at %.0f msg/s", p->w.rate);
	frame(f, y0, title, "latency, microseconds (log)", "percentile");
	cdf_ticks(f, y0, &xa);
	for (int k = 0; k < SYS_COUNT; k++) {
		const struct hist *h = p->res[k].lat;
		if (p->res[k].status != ST_OK || !h || !h->count)
			continue;
		cdf_line(f, y0, k, h, &xa);
		legend(f, y0, li++, k);
	}
	legend_missing(f, y0, li, p);
	return 1;
}

static const struct point *latency_point(const struct point *pts, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(pts[i].section, "latency"))
			return &pts[i];
	for (int i = 0; i < n; i++)
		if (!strcmp(pts[i].section, "single"))
			return &pts[i];
	return NULL;
}

static int panels(FILE *f, const struct point *pts, int n)
{
	const struct point *lp = latency_point(pts, n);
	int y = 40;
	char t[160];
	const struct point *pp = NULL, *sp = NULL;
	for (int i = 0; i < n; i++) {
		if (!pp && !strcmp(pts[i].section, "payload"))
			pp = &pts[i];
		if (!sp && !strcmp(pts[i].section, "producers"))
			sp = &pts[i];
	}
	if (pp) {
		snprintf(t, sizeof(t), "Throughput against payload size: %d producer%s, batch %u",
			 pp->w.producers, pp->w.producers > 1 ? "s" : "", pp->w.batch);
		y += rate_panel(f, y, pts, n, "payload", t, "payload bytes") * PH;
	}
	if (lp)
		y += cdf_panel(f, y, lp) * PH;
	if (sp) {
		snprintf(t, sizeof(t), "Scaling with producers: %u B, batch %u",
			 sp->w.size, sp->w.batch);
		y += rate_panel(f, y, pts, n, "producers", t, "producer processes") * PH;
	}
	return y;
}

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else
			fputc(*s, f);
	}
}

int report_svg(const char *path, const struct bench_info *bi,
	       const struct point *pts, int n)
{
	FILE *f = fopen(path, "w");
	long at;
	int h;
	if (!f)
		return -errno;
	/* The height is known only after the panels: leave room, fill in. */
	fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
		"<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='", W);
	at = ftell(f);
	fprintf(f, "%06d' font-family='sans-serif' font-size='12'>\n", 0);
	fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
	fprintf(f, "<text x='%d' y='24' font-size='13'>gpuq-bench: queue ", ML);
	xml_text(f, bi->queue);
	fprintf(f, " (%s, %s backend), ", bi->handler, bi->backend);
	xml_text(f, bi->cpu);
	fprintf(f, ", %d CPUs</text>\n", bi->cpus);
	h = panels(f, pts, n);
	fprintf(f, "</svg>\n");
	if (fseek(f, at, SEEK_SET) == 0)
		fprintf(f, "%06d", h + 10);
	return fclose(f) ? -errno : 0;
}
