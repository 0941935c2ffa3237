/* /proc/stat is the machine's view; in a container or a systemd slice with
 * a CPU quota (cgroup v2 cpu.max, v1 cpu.cfs_quota_us) the machine may
 * idle while our cgroup uses all it may, so both are read and the smaller
 * room wins, as in memory.c. Idle time is counted on our own CPUs only: the worker
 * inherits our affinity (a cpuset, taskset), so other CPUs idling are no
 * room it could use. */
#include "bam/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bam/cgroup.h"

static void add_cpu(struct bam_cpu_sample *s, const unsigned long long v[8])
{
	s->ncpu++;
	s->idle += v[3] + v[4];
	for (int i = 0; i < 8; i++)
		s->total += v[i];
}

/* Our CPUs' lines of /proc/stat. Where that file shows exactly as many
 * CPUs as our affinity holds, it is taken to show ours, whatever their
 * numbers: LXCFS renumbers a container's CPUs from 0 while the affinity
 * keeps the host's numbers. */
static void stat_cpus(const char *root, const cpu_set_t *cpus, struct bam_cpu_sample *s)
{
	char p[4200], line[512];
	struct bam_cpu_sample all = { 0 };
	snprintf(p, sizeof(p), "%s/proc/stat", root);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* "cpuN user nice system idle iowait irq softirq steal guest
		 * guest_nice": guest time is inside user already, so the first
		 * eight make the total. */
		unsigned long long v[8] = { 0 };
		int n, cpu;
		/* (not the "cpu  " line, the sum of all: a digit must follow) */
		if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9' ||
		    sscanf(line + 3, "%d%n", &cpu, &n) != 1)
			continue;
		if (cpu < 0 || sscanf(line + 3 + n, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
				      &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 4)
			continue;
		add_cpu(&all, v);
		if (!cpus || (cpu < CPU_SETSIZE && CPU_ISSET(cpu, cpus)))
			add_cpu(s, v);
	}
	fclose(f);
	if (cpus && all.ncpu == CPU_COUNT(cpus)) {
		s->ncpu = all.ncpu;
		s->idle = all.idle;
		s->total = all.total;
	}
}

static void add_level(struct bam_cpu_sample *s, const char *dir, double quota_cpus, long long usage_us)
{
	struct stat st;
	if (s->nlevels >= BAM_CPU_LEVELS || stat(dir, &st))
		return;
	s->quota_cpus[s->nlevels] = quota_cpus;
	s->usage_us[s->nlevels] = usage_us;
	s->level_dev[s->nlevels] = (unsigned long long)st.st_dev;
	s->level_ino[s->nlevels++] = (unsigned long long)st.st_ino;
}

static void cgroup_level(const char *dir, void *arg)
{
	struct bam_cpu_sample *s = arg;
	char p[4200], line[128];
	long long quota, period;
	if (s->nlevels >= BAM_CPU_LEVELS)
		return;
	snprintf(p, sizeof(p), "%s/cpu.max", dir);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	int got = fscanf(f, "%lld %lld", &quota, &period); /* "max 100000": no quota, 0 read */
	fclose(f);
	if (got != 2 || quota <= 0 || period <= 0)
		return;
	snprintf(p, sizeof(p), "%s/cpu.stat", dir);
	f = fopen(p, "re");
	long long usage = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "usage_usec %lld", &usage) == 1)
			break;
	if (f)
		fclose(f);
	if (usage < 0)
		return;
	add_level(s, dir, (double)quota / (double)period, usage);
}

/* cgroup v1: the quota in cpu.cfs_quota_us (-1: none) per
 * cpu.cfs_period_us, the use in cpuacct.usage (ns). Only where cpuacct is
 * mounted with cpu (systemd's and Docker's layout: one directory has all
 * three); a level without cpuacct.usage has no use to compare, so its
 * quota is passed over and /proc/stat alone decides, as before. */
static void cgroup_level_v1(const char *dir, void *arg)
{
	struct bam_cpu_sample *s = arg;
	char p[4200];
	if (s->nlevels >= BAM_CPU_LEVELS)
		return;
	snprintf(p, sizeof(p), "%s/cpu.cfs_quota_us", dir);
	long long quota = bam_read_ll(p); /* "-1" reads as -1: no quota */
	snprintf(p, sizeof(p), "%s/cpu.cfs_period_us", dir);
	long long period = bam_read_ll(p);
	snprintf(p, sizeof(p), "%s/cpuacct.usage", dir);
	long long usage_ns = bam_read_ll(p);
	if (quota <= 0 || period <= 0 || usage_ns < 0)
		return;
	add_level(s, dir, (double)quota / (double)period, usage_ns / 1000);
}

void bam_cpu_read(const char *root, const cpu_set_t *cpus, double at_s, struct bam_cpu_sample *s)
{
	memset(s, 0, sizeof(*s));
	s->at_s = at_s;
	stat_cpus(root, cpus, s);
	char p[4200], line[4200];
	snprintf(p, sizeof(p), "%s/proc/self/cgroup", root);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	const char *ctrls, *path;
	while (fgets(line, sizeof(line), f)) {
		if (!bam_cgroup_line(line, &ctrls, &path))
			continue;
		if (!*ctrls) { /* v2 */
			static const char *const mounts[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
			for (size_t i = 0; i < 2; i++) {
				snprintf(p, sizeof(p), "%s%s", root, mounts[i]);
				bam_cgroup_walk(p, path, cgroup_level, s);
			}
			continue;
		}
		/* v1: "N:cpu,cpuacct:/path". The controller's mount goes by
		 * several names (systemd links cpu and cpuacct to the joint
		 * directory); the first that exists is read, so no level counts
		 * twice. */
		if (!bam_cgroup_names(ctrls, "cpu"))
			continue;
		static const char *const v1[] = { "cpu", "cpu,cpuacct", "cpuacct,cpu" };
		for (size_t i = 0; i < 3; i++) {
			struct stat st;
			snprintf(p, sizeof(p), "%s/sys/fs/cgroup/%s", root, v1[i]);
			if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
				bam_cgroup_walk(p, path, cgroup_level_v1, s);
				break;
			}
		}
	}
	fclose(f);
}

double bam_cpu_idle(const struct bam_cpu_sample *a, const struct bam_cpu_sample *b)
{
	double idle = -1, dt = b->at_s - a->at_s;
	if (a->ncpu && a->ncpu == b->ncpu && b->total > a->total && b->idle >= a->idle)
		idle = (double)(b->idle - a->idle) / (double)(b->total - a->total) * b->ncpu;
	/* Each level with a quota in both samples; one that gained or lost its
	 * quota in between has no use over the interval to compare. */
	for (int i = 0; dt > 0 && i < b->nlevels; i++)
		for (int j = 0; j < a->nlevels; j++) {
			if (a->level_dev[j] != b->level_dev[i] || a->level_ino[j] != b->level_ino[i] ||
			    b->usage_us[i] < a->usage_us[j])
				continue;
			double used = (double)(b->usage_us[i] - a->usage_us[j]) / 1e6 / dt;
			double room = b->quota_cpus[i] - used;
			if (room < 0)
				room = 0;
			if (idle < 0 || room < idle)
				idle = room;
		}
	return idle;
}
