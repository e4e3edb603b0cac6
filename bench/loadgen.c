/*
 * loadgen: a small HTTP/1.1 load generator over mutual TLS (OpenSSL), for csip's benchmarks.
 *
 * One thread per connection, blocking I/O.  Each connection walks a list of URL paths
 * round-robin, starting at its own offset, so one run can poll thousands of different
 * resources (which `ab` cannot).  Prints one JSON line on stdout:
 *   {"requests":..,"ok":..,"non2xx":..,"errors":..,"elapsed_s":..,"rps":..,
 *    "p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"bytes":..,"connections":..,
 *    "resumed":..,"client_cpu_s":..,"cipher":"..","protocol":".."}
 * Latency is measured per request from just before the request is written (in new-connection
 * mode: before connect(), so it includes the TCP and TLS handshakes) to the last body byte.
 *
 * Build: cc -O2 -o loadgen loadgen.c -lssl -lcrypto -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Offer what a 2030.5 client offers: the mandatory CCM8 suite (OpenSSL 3 leaves it out of
 * DEFAULT, and DEFAULT's "!" would delete it even if appended) plus OpenSSL's strong suites.
 * The server picks (csip prefers CCM8). */
#define DEFAULT_CIPHERS "ECDHE-ECDSA-AES128-CCM8:HIGH:!aNULL"
#define IO_TIMEOUT_S 10

static const char *opt_host = "127.0.0.1";
static const char *opt_sni = "localhost";
static int opt_port = 8443;
static const char *opt_ca;
static const char *opt_cert;
static const char *opt_key;
static const char *opt_ciphers = DEFAULT_CIPHERS;
static int opt_conc = 16;
static long opt_requests = 0;  /* total requests (0: use duration) */
static double opt_duration = 0; /* seconds */
static double opt_timeout = 300; /* hard cap on the whole run, seconds */
static int opt_newconn = 0;     /* -r: new connection per request */
static int opt_resume = 0;      /* -s: TLS session resumption across new connections */
static int opt_onepass = 0;     /* -P: every path exactly once, from a shared cursor */
static const char *opt_paths;
static const char *opt_single_path = "/dcap";

static char **paths;
static size_t *path_lens;
static size_t npaths;

static SSL_CTX *ctx;
static struct sockaddr_storage addr;
static socklen_t addrlen;

static atomic_long issued;   /* requests handed out (requests / one-pass modes) */
static atomic_int stop_flag;
static double t_start, t_deadline;
static char cipher_name[128] = "";
static char proto_name[32] = "";
static pthread_mutex_t name_lock = PTHREAD_MUTEX_INITIALIZER;

struct stats {
    long ok, non2xx, errors, bytes, conns, resumed;
    uint32_t *lat_us;
    size_t nlat, caplat;
};

struct worker {
    pthread_t tid;
    int index;
    struct stats st;
    char *rbuf;
    size_t rcap, rlen, rpos;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static void record(struct stats *st, double seconds) {
    if (st->nlat == st->caplat) {
        st->caplat = st->caplat ? st->caplat * 2 : 4096;
        st->lat_us = realloc(st->lat_us, st->caplat * sizeof *st->lat_us);
        if (!st->lat_us) die("out of memory");
    }
    double us = seconds * 1e6;
    st->lat_us[st->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static void load_paths(void) {
    if (!opt_paths) {
        paths = malloc(sizeof *paths);
        path_lens = malloc(sizeof *path_lens);
        paths[0] = strdup(opt_single_path);
        path_lens[0] = strlen(paths[0]);
        npaths = 1;
        return;
    }
    FILE *f = fopen(opt_paths, "r");
    if (!f) die("cannot open the paths file");
    size_t cap = 1024;
    paths = malloc(cap * sizeof *paths);
    char *line = NULL;
    size_t n = 0;
    ssize_t len;
    while ((len = getline(&line, &n, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        if (len == 0 || line[0] == '#') continue;
        if (npaths == cap) {
            cap *= 2;
            paths = realloc(paths, cap * sizeof *paths);
        }
        paths[npaths++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (npaths == 0) die("the paths file has no paths");
    path_lens = malloc(npaths * sizeof *path_lens);
    for (size_t i = 0; i < npaths; i++) path_lens[i] = strlen(paths[i]);
}

static void resolve(void) {
    struct addrinfo hints = {0}, *res;
    char port[16];
    snprintf(port, sizeof port, "%d", opt_port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(opt_host, port, &hints, &res) != 0) die("cannot resolve host");
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void setup_tls(void) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (!SSL_CTX_set_cipher_list(ctx, opt_ciphers)) die("bad cipher list");
    if (opt_ca) {
        if (!SSL_CTX_load_verify_locations(ctx, opt_ca, NULL)) die("cannot load the CA file");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (opt_cert) {
        if (!SSL_CTX_use_certificate_chain_file(ctx, opt_cert)) die("cannot load the client cert");
        if (!SSL_CTX_use_PrivateKey_file(ctx, opt_key ? opt_key : opt_cert, SSL_FILETYPE_PEM))
            die("cannot load the client key");
        if (!SSL_CTX_check_private_key(ctx)) die("client key does not match the cert");
    }
    if (opt_resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
}

struct conn {
    int fd;
    SSL *ssl;
};

static void conn_close(struct conn *c, SSL_SESSION **keep) {
    if (c->ssl) {
        if (keep && opt_resume) {
            SSL_SESSION *s = SSL_get1_session(c->ssl);
            if (s) {
                if (*keep) SSL_SESSION_free(*keep);
                *keep = s;
            }
        }
        SSL_shutdown(c->ssl); /* send close_notify, do not wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int conn_open(struct worker *w, struct conn *c, SSL_SESSION *session) {
    c->fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, (struct sockaddr *)&addr, addrlen) != 0) goto fail;
    c->ssl = SSL_new(ctx);
    if (!c->ssl) goto fail;
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, opt_sni);
    if (session) SSL_set_session(c->ssl, session);
    if (SSL_connect(c->ssl) != 1) goto fail;
    w->st.conns++;
    if (SSL_session_reused(c->ssl)) w->st.resumed++;
    if (!cipher_name[0]) {
        pthread_mutex_lock(&name_lock);
        snprintf(cipher_name, sizeof cipher_name, "%s", SSL_get_cipher_name(c->ssl));
        snprintf(proto_name, sizeof proto_name, "%s", SSL_get_version(c->ssl));
        pthread_mutex_unlock(&name_lock);
    }
    return 0;
fail:
    if (getenv("LOADGEN_DEBUG")) ERR_print_errors_fp(stderr);
    ERR_clear_error();
    conn_close(c, NULL);
    return -1;
}

/* Read more bytes into the worker's buffer; returns bytes read, 0 on EOF, -1 on error. */
static int fill(struct worker *w, struct conn *c) {
    if (w->rpos > 0 && w->rpos == w->rlen) w->rpos = w->rlen = 0;
    if (w->rcap - w->rlen < 16384) {
        if (w->rpos > 0) {
            memmove(w->rbuf, w->rbuf + w->rpos, w->rlen - w->rpos);
            w->rlen -= w->rpos;
            w->rpos = 0;
        }
        if (w->rcap - w->rlen < 16384) {
            w->rcap *= 2;
            w->rbuf = realloc(w->rbuf, w->rcap);
            if (!w->rbuf) die("out of memory");
        }
    }
    int n = SSL_read(c->ssl, w->rbuf + w->rlen, (int)(w->rcap - w->rlen));
    if (n > 0) {
        w->rlen += n;
        return n;
    }
    int e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* Find "\r\n" from the read position; fill as needed.  Returns line length or -1. */
static long read_line(struct worker *w, struct conn *c, char **line) {
    size_t scan = w->rpos;
    for (;;) {
        char *p = memmem(w->rbuf + scan, w->rlen - scan, "\r\n", 2);
        if (p) {
            *line = w->rbuf + w->rpos;
            long len = p - (w->rbuf + w->rpos);
            w->rpos += len + 2;
            return len;
        }
        scan = w->rlen > w->rpos ? w->rlen - 1 : w->rpos;
        size_t off = scan - w->rpos;
        if (w->rlen - w->rpos > 65536) return -1; /* absurd header line */
        if (fill(w, c) <= 0) return -1;
        scan = w->rpos + off;
    }
}

static int skip_body(struct worker *w, struct conn *c, long n) {
    while (n > 0) {
        long have = (long)(w->rlen - w->rpos);
        if (have == 0) {
            if (fill(w, c) <= 0) return -1;
            continue;
        }
        long take = have < n ? have : n;
        w->rpos += take;
        n -= take;
        w->st.bytes += take;
    }
    return 0;
}

/* Read one response.  Returns the status (>0), or -1 on error; *close_after set if the server
 * asked to close. */
static int read_response(struct worker *w, struct conn *c, int *close_after) {
    char *line;
    long len = read_line(w, c, &line);
    if (len < 12 || strncmp(line, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(line + 9);
    long clen = -1;
    int chunked = 0;
    *close_after = line[7] == '0';
    for (;;) {
        len = read_line(w, c, &line);
        if (len < 0) return -1;
        if (len == 0) break;
        if (len > 15 && strncasecmp(line, "content-length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        else if (len > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0)
            chunked = memmem(line, len, "chunked", 7) != NULL;
        else if (len > 11 && strncasecmp(line, "connection:", 11) == 0)
            *close_after = memmem(line, len, "close", 5) != NULL;
    }
    if (chunked) {
        for (;;) {
            len = read_line(w, c, &line);
            if (len <= 0) return -1;
            long size = strtol(line, NULL, 16);
            if (skip_body(w, c, size) < 0) return -1;
            len = read_line(w, c, &line); /* CRLF after the chunk (or the trailer end) */
            if (len != 0) return -1;
            if (size == 0) break;
        }
    } else if (clen >= 0) {
        if (skip_body(w, c, clen) < 0) return -1;
    } else if (status != 204 && status != 304 && !(status >= 100 && status < 200)) {
        /* body until EOF */
        w->st.bytes += (long)(w->rlen - w->rpos);
        w->rpos = w->rlen;
        int n;
        while ((n = fill(w, c)) > 0) {
            w->st.bytes += n;
            w->rpos = w->rlen;
        }
        *close_after = 1;
    }
    return status;
}

/* Next path index for this worker, or -1 when the run is over. */
static long next_index(struct worker *w, size_t *cursor) {
    if (atomic_load(&stop_flag)) return -1;
    if (now_s() >= t_deadline) {
        atomic_store(&stop_flag, 1);
        return -1;
    }
    if (opt_onepass) {
        long i = atomic_fetch_add(&issued, 1);
        return i < (long)npaths ? i : -1;
    }
    if (opt_requests > 0 && atomic_fetch_add(&issued, 1) >= opt_requests) return -1;
    (void)w;
    long i = (long)*cursor;
    *cursor = (*cursor + 1) % npaths;
    return i;
}

static void *run_worker(void *arg) {
    struct worker *w = arg;
    struct conn c = {-1, NULL};
    SSL_SESSION *session = NULL;
    size_t cursor = (size_t)((double)w->index * npaths / opt_conc) % npaths;
    char *req = malloc(4096 + 256);
    size_t reqcap = 4096;
    w->rcap = 65536;
    w->rbuf = malloc(w->rcap);
    w->rlen = w->rpos = 0;
    long i;
    while ((i = next_index(w, &cursor)) >= 0) {
        if (path_lens[i] > reqcap) {
            reqcap = path_lens[i];
            req = realloc(req, reqcap + 256);
        }
        int rl = snprintf(req, reqcap + 256,
                          "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/sep+xml\r\n%s\r\n",
                          paths[i], opt_sni, opt_port, opt_newconn ? "Connection: close\r\n" : "");
        double t0 = now_s();
        if (c.ssl == NULL) {
            w->rlen = w->rpos = 0;
            if (conn_open(w, &c, session) != 0) {
                w->st.errors++;
                if (now_s() - t0 < 0.001) usleep(1000); /* refused: do not spin */
                continue;
            }
        }
        int close_after = 0, status = -1;
        if (SSL_write(c.ssl, req, rl) == rl) status = read_response(w, &c, &close_after);
        else ERR_clear_error();
        if (status < 0) {
            w->st.errors++;
            conn_close(&c, NULL);
            continue;
        }
        record(&w->st, now_s() - t0);
        if (status >= 200 && status < 300) w->st.ok++;
        else w->st.non2xx++;
        if (close_after || opt_newconn) conn_close(&c, &session);
    }
    conn_close(&c, NULL);
    if (session) SSL_SESSION_free(session);
    free(req);
    free(w->rbuf);
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "{\"error\":\"loadgen: hard timeout, threads stuck\"}\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(3);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen -p PORT [-h HOST] [-S SNI] -C CA.pem -c CERT.pem [-k KEY.pem]\n"
            "               [-n CONNECTIONS] (-N REQUESTS | -t SECONDS | -P) [-T HARD_TIMEOUT]\n"
            "               [-r] [-s] [-f PATHS_FILE | -u PATH] [-Z CIPHERS]\n"
            "  -n  concurrent connections, one thread each (default 16)\n"
            "  -N  total requests; -t run for SECONDS; -P one pass: every path once\n"
            "  -T  hard cap on the run in seconds (default 300): the generator always stops\n"
            "  -r  new TLS connection per request; -s with -r: resume TLS sessions\n"
            "  -f  file of URL paths, one per line; connection i starts at i*len/n\n"
            "  -u  a single path (default /dcap)\n"
            "  -Z  OpenSSL cipher list offered (default " DEFAULT_CIPHERS ")\n");
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "h:S:p:C:c:k:n:N:t:T:rsPf:u:Z:")) != -1) {
        switch (opt) {
        case 'h': opt_host = optarg; break;
        case 'S': opt_sni = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'C': opt_ca = optarg; break;
        case 'c': opt_cert = optarg; break;
        case 'k': opt_key = optarg; break;
        case 'n': opt_conc = atoi(optarg); break;
        case 'N': opt_requests = atol(optarg); break;
        case 't': opt_duration = atof(optarg); break;
        case 'T': opt_timeout = atof(optarg); break;
        case 'r': opt_newconn = 1; break;
        case 's': opt_resume = 1; break;
        case 'P': opt_onepass = 1; break;
        case 'f': opt_paths = optarg; break;
        case 'u': opt_single_path = optarg; break;
        case 'Z': opt_ciphers = optarg; break;
        default: usage();
        }
    }
    if (opt_conc < 1 || opt_port <= 0 || opt_timeout <= 0) usage();
    if (!opt_onepass && opt_requests <= 0 && opt_duration <= 0) usage();
    signal(SIGPIPE, SIG_IGN);
    load_paths();
    resolve();
    setup_tls();

    double limit = opt_timeout;
    if (opt_duration > 0 && opt_duration < limit) limit = opt_duration;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(limit + 2 * IO_TIMEOUT_S + 5));

    struct worker *ws = calloc(opt_conc, sizeof *ws);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    struct rusage ru0, ru;
    getrusage(RUSAGE_SELF, &ru0);
    t_start = now_s();
    t_deadline = t_start + limit;
    for (int i = 0; i < opt_conc; i++) {
        ws[i].index = i;
        if (pthread_create(&ws[i].tid, &attr, run_worker, &ws[i]) != 0) die("pthread_create");
    }
    for (int i = 0; i < opt_conc; i++) pthread_join(ws[i].tid, NULL);
    double elapsed = now_s() - t_start;

    struct stats tot = {0};
    for (int i = 0; i < opt_conc; i++) {
        struct stats *s = &ws[i].st;
        tot.ok += s->ok;
        tot.non2xx += s->non2xx;
        tot.errors += s->errors;
        tot.bytes += s->bytes;
        tot.conns += s->conns;
        tot.resumed += s->resumed;
        tot.nlat += s->nlat;
    }
    getrusage(RUSAGE_SELF, &ru);
#define TV(t) ((t).tv_sec + (t).tv_usec / 1e6)
    /* client CPU during the run only (not loading certificates and paths) */
    double cpu = TV(ru.ru_utime) + TV(ru.ru_stime) - TV(ru0.ru_utime) - TV(ru0.ru_stime);
    uint32_t *all = malloc((tot.nlat ? tot.nlat : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < opt_conc; i++) {
        memcpy(all + k, ws[i].st.lat_us, ws[i].st.nlat * sizeof *all);
        k += ws[i].st.nlat;
    }
    qsort(all, tot.nlat, sizeof *all, cmp_u32);
#define PCT(p) (tot.nlat ? all[(size_t)((p) * (tot.nlat - 1))] / 1000.0 : 0.0)
    long done = tot.ok + tot.non2xx;
    printf("{\"requests\":%ld,\"ok\":%ld,\"non2xx\":%ld,\"errors\":%ld,\"elapsed_s\":%.4f,"
           "\"rps\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"bytes\":%ld,\"connections\":%ld,\"resumed\":%ld,\"concurrency\":%d,"
           "\"paths\":%zu,\"client_cpu_s\":%.3f,\"cipher\":\"%s\",\"protocol\":\"%s\",\"timed_out\":%s}\n",
           done, tot.ok, tot.non2xx, tot.errors, elapsed, elapsed > 0 ? done / elapsed : 0.0,
           PCT(0.50), PCT(0.90), PCT(0.99), tot.nlat ? all[tot.nlat - 1] / 1000.0 : 0.0,
           tot.bytes, tot.conns, tot.resumed, opt_conc, npaths, cpu, cipher_name, proto_name,
           (opt_requests > 0 || opt_onepass) && elapsed >= opt_timeout ? "true" : "false");
    return 0;
}
