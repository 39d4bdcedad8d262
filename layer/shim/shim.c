/*
 * libdoppel.so: puts a process under doppel's seccomp filter where only the
 * environment can be set (IDE launches; a dynamically linked debugger whose
 * static debuggee inherits the filter). Protocol with layer.PreloadServer,
 * over the SOCK_SEQPACKET socket named by DOPPEL_LAYER_SOCKET:
 *   shim -> server  "DOPPEL1" u32 fd u64 msghdr   (little endian; the sendmsg
 *                   that hands over the listener, which the filter exempts)
 *   server -> shim  the BPF program (struct sock_filter[])
 *   shim -> server  one byte with the listener fd (SCM_RIGHTS), or 'E' + reason
 *   server -> shim  one byte ack once the supervisor answers the listener
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_TSYNC_ESRCH
#define SECCOMP_FILTER_FLAG_TSYNC_ESRCH (1UL << 4)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif

static pid_t supervisor;

/* Yama (ptrace_scope=1) lets only ancestors read a process's memory unless
 * it names a tracer; the naming is not inherited across fork. */
static void name_tracer(void) {
	if (supervisor > 0)
		prctl(PR_SET_PTRACER, supervisor, 0, 0, 0);
}

static long install(struct sock_filter *f, unsigned short n, unsigned long flags) {
	struct sock_fprog prog = {.len = n, .filter = f};
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* covered reports whether a filter above us already has a listener: a second
 * one gives EBUSY. An allow-all probe costs nothing per syscall (the kernel's
 * action cache skips it) and, once its listener is closed, does not block the
 * real install. */
static int covered(void) {
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	long fd = install(&allow, 1, SECCOMP_FILTER_FLAG_NEW_LISTENER);
	if (fd < 0)
		return errno == EBUSY;
	close((int)fd);
	return 0;
}

static struct msghdr handoff; /* at a fixed address: the filter exempts it */
static struct iovec handoff_iov;
static char handoff_byte = 'L';
static union {
	char buf[CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
} handoff_cmsg;

static void warn(const char *what) {
	fprintf(stderr, "doppel: libdoppel: %s: %s (running without interception)\n", what, strerror(errno));
}

__attribute__((constructor)) static void doppel_init(void) {
	const char *path = getenv("DOPPEL_LAYER_SOCKET");
	if (path == NULL || *path == 0)
		return;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		warn("no_new_privs");
		return;
	}
	if (covered())
		return;

	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		warn("connect to the session");
		if (s >= 0)
			close(s);
		return;
	}
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		supervisor = cred.pid;
		name_tracer();
		pthread_atfork(NULL, NULL, name_tracer);
	}

	unsigned char hello[7 + 4 + 8];
	uint32_t fd32 = (uint32_t)s;
	uint64_t msg = (uint64_t)(uintptr_t)&handoff;
	memcpy(hello, "DOPPEL1", 7);
	memcpy(hello + 7, &fd32, 4);
	memcpy(hello + 11, &msg, 8);
	static struct sock_filter prog[4096 / sizeof(struct sock_filter)];
	ssize_t n;
	if (send(s, hello, sizeof(hello), 0) != (ssize_t)sizeof(hello) ||
	    (n = recv(s, prog, sizeof(prog), 0)) <= 0 || n % sizeof(struct sock_filter) != 0) {
		warn("handshake");
		close(s);
		return;
	}

	long listener = install(prog, (unsigned short)(n / sizeof(struct sock_filter)),
	                        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC |
	                            SECCOMP_FILTER_FLAG_TSYNC_ESRCH | SECCOMP_FILTER_FLAG_SPEC_ALLOW |
	                            SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
	if (listener < 0 && errno == EINVAL) /* before 5.19: no WAIT_KILLABLE_RECV */
		listener = install(prog, (unsigned short)(n / sizeof(struct sock_filter)),
		                   SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC |
		                       SECCOMP_FILTER_FLAG_TSYNC_ESRCH | SECCOMP_FILTER_FLAG_SPEC_ALLOW);
	if (listener < 0) {
		char reason[128];
		int len = snprintf(reason, sizeof(reason), "Einstall: %s", strerror(errno));
		send(s, reason, (size_t)len, 0);
		warn("install the filter");
		close(s);
		return;
	}

	handoff_iov.iov_base = &handoff_byte;
	handoff_iov.iov_len = 1;
	handoff.msg_iov = &handoff_iov;
	handoff.msg_iovlen = 1;
	handoff.msg_control = handoff_cmsg.buf;
	handoff.msg_controllen = sizeof(handoff_cmsg.buf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&handoff);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	int lfd = (int)listener;
	memcpy(CMSG_DATA(c), &lfd, sizeof(int));
	/* Raw syscall: libc's sendmsg could pass a copy of the msghdr. */
	if (syscall(SYS_sendmsg, s, &handoff, 0) != 1) {
		warn("hand over the listener");
		_exit(126); /* filtered with nobody to answer: calls would fail */
	}
	close(lfd);
	char ack;
	if (recv(s, &ack, 1, 0) != 1)
		_exit(126);
	close(s);
}
