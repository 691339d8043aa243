/*
 * passthrough.c - minimal read-only libfuse3 filesystem used as the benchmark baseline for casfs.
 *
 * It exposes the regular files of one source directory flat at the mount's root and sets the
 * same kernel-facing options casfs uses (long entry/attr/negative timeouts, kernel_cache and
 * keep_cache, read-only), so a casfs/passthrough ratio measures casfs itself, not the options.
 *
 * Usage:  passthrough SRCDIR MOUNTPOINT [libfuse options, e.g. -f]
 * Build:  gcc -O2 -Wall -o passthrough passthrough.c $(pkg-config --cflags --libs fuse3)
 *
 * It runs libfuse's default multi-threaded loop (fuse_main without -s). At unmount it prints one
 * line of READ statistics to stderr so the benchmark can report the request sizes it saw.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Content never changes under the benchmark, so the kernel may cache names and attributes
 * for as long as it likes; short timeouts would add a GETATTR/LOOKUP per read. */
#define CACHE_TIMEOUT_S 3600.0

/* READ-size histogram: bucket i counts requests of size in (2^(i-1), 2^i] bytes. */
#define HIST_BUCKETS 32

static int src_fd = -1;

static struct {
	uint64_t reads;
	uint64_t bytes;
	uint64_t max_size;
	uint64_t hist[HIST_BUCKETS];
} stats;

/* Maps "/name" to "name"; anything deeper than the root does not exist (the view is flat). */
static const char *leaf_name(const char *path)
{
	if (path == NULL || path[0] != '/' || path[1] == '\0' || strchr(path + 1, '/') != NULL)
		return NULL;
	return path + 1;
}

static void *pt_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->entry_timeout = CACHE_TIMEOUT_S;
	cfg->attr_timeout = CACHE_TIMEOUT_S;
	cfg->negative_timeout = CACHE_TIMEOUT_S;
	cfg->kernel_cache = 1;
	return NULL;
}

static void pt_destroy(void *private_data)
{
	(void)private_data;
	fprintf(stderr, "passthrough-stats reads=%llu bytes=%llu max=%llu hist=",
		(unsigned long long)stats.reads, (unsigned long long)stats.bytes,
		(unsigned long long)stats.max_size);
	for (int i = 0; i < HIST_BUCKETS; i++)
		if (stats.hist[i])
			fprintf(stderr, "%llu:%llu,", 1ULL << i, (unsigned long long)stats.hist[i]);
	fputc('\n', stderr);
}

static int pt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	if (strcmp(path, "/") == 0) {
		if (fstat(src_fd, st) == -1)
			return -errno;
	} else {
		const char *name = leaf_name(path);
		if (name == NULL)
			return -ENOENT;
		if (fstatat(src_fd, name, st, AT_SYMLINK_NOFOLLOW) == -1)
			return -errno;
		if (!S_ISREG(st->st_mode))
			return -ENOENT; /* only regular files are exposed */
	}
	st->st_mode &= ~(mode_t)(S_IWUSR | S_IWGRP | S_IWOTH);
	return 0;
}

static int is_regular(int dirfd, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_REG;
	/* Some file systems do not fill d_type; fall back to a stat. */
	return fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)offset;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/") != 0)
		return -ENOTDIR;

	/* A fresh fd per listing: fdopendir takes ownership and the offset must start at 0. */
	int fd = openat(src_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (dir == NULL) {
		int err = errno;
		close(fd);
		return -err;
	}
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (!is_regular(dirfd(dir), de))
			continue;
		if (filler(buf, de->d_name, NULL, 0, 0) != 0)
			break; /* offset 0 mode: libfuse's buffer is full, nothing more fits */
	}
	closedir(dir);
	return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi)
{
	const char *name = leaf_name(path);

	if (name == NULL)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	int fd = openat(src_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return -errno;
	fi->fh = (uint64_t)fd;
	/* Content is immutable: keep the page cache across opens. */
	fi->keep_cache = 1;
	return 0;
}

static void count_read(size_t size)
{
	int bucket = 0;

	while (bucket < HIST_BUCKETS - 1 && (1ULL << bucket) < size)
		bucket++;
	__atomic_fetch_add(&stats.reads, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&stats.bytes, size, __ATOMIC_RELAXED);
	__atomic_fetch_add(&stats.hist[bucket], 1, __ATOMIC_RELAXED);
	uint64_t seen = __atomic_load_n(&stats.max_size, __ATOMIC_RELAXED);
	while (size > seen &&
	       !__atomic_compare_exchange_n(&stats.max_size, &seen, size, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

static int pt_read(const char *path, char *buf, size_t size, off_t offset,
		   struct fuse_file_info *fi)
{
	(void)path;
	count_read(size);
	size_t done = 0;
	/* Loop because pread may return short; the kernel expects a full buffer except at EOF. */
	while (done < size) {
		ssize_t n = pread((int)fi->fh, buf + done, size - done, offset + (off_t)done);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;
}

static int pt_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static const struct fuse_operations pt_ops = {
	.init = pt_init,
	.destroy = pt_destroy,
	.getattr = pt_getattr,
	.readdir = pt_readdir,
	.open = pt_open,
	.read = pt_read,
	.release = pt_release,
};

static const char *src_path;

/* Takes the first non-option argument as SRCDIR and leaves the rest (MOUNTPOINT) to libfuse. */
static int take_source(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)data;
	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && src_path == NULL) {
		src_path = arg;
		return 0;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);

	if (fuse_opt_parse(&args, NULL, NULL, take_source) == -1)
		return 1;
	if (src_path == NULL) {
		fprintf(stderr, "usage: %s SRCDIR MOUNTPOINT [FUSE options]\n", argv[0]);
		return 1;
	}
	src_fd = open(src_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src_fd == -1) {
		perror(src_path);
		return 1;
	}
	/* Read-only like casfs; no max_read (it makes the mount fail on libfuse 3.14). */
	if (fuse_opt_add_arg(&args, "-oro,fsname=passthrough,subtype=passthrough") == -1)
		return 1;
	int ret = fuse_main(args.argc, args.argv, &pt_ops, NULL);
	fuse_opt_free_args(&args);
	close(src_fd);
	return ret;
}
