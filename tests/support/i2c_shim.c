/*
 * An i2c-dev character device in user space, for the tests: LD_PRELOAD it into watchpost and every open() of the
 * file named by WATCHPOST_I2C_SHIM_DEV becomes a connection to the chip models at WATCHPOST_I2C_SHIM_SOCKET; the
 * ioctls of the kernel's i2c-dev interface (I2C_SLAVE, I2C_SLAVE_FORCE, I2C_FUNCS, I2C_RDWR) go to the models as
 * messages, and the answers come back as the kernel gives them (read buffers filled, or -1 with the errno the
 * adapter would report: ENXIO for an address NACK, EREMOTEIO for a data NACK, ETIMEDOUT). So watchpost runs its
 * real Linux path — linux-embedded-hal, i2cdev, the ioctl structures — against devices it did not write.
 *
 * Wire format (one request per I2C_RDWR, on a stream socket):
 *   request:  u8 nmsgs, then per message: u16 addr, u16 flags, u16 len, [len bytes if a write]
 *   response: i32 errno (0: done), then the bytes of every read message, in order
 * Integers are little-endian.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FD 4096
static unsigned char shim_fd[MAX_FD];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int is_shim_path(const char *path) {
    const char *dev = getenv("WATCHPOST_I2C_SHIM_DEV");
    return path && dev && strcmp(path, dev) == 0;
}

static int connect_models(void) {
    const char *sock = getenv("WATCHPOST_I2C_SHIM_SOCKET");
    if (!sock) {
        errno = ENOENT;
        return -1;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    if (s < MAX_FD)
        shim_fd[s] = 1;
    return s;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

#define OPEN_WRAPPER(name)                                                                                   \
    int name(const char *path, int flags, ...) {                                                          \
        if (is_shim_path(path))                                                                          \
            return connect_models();                                                                     \
        static open_fn real;                                                                             \
        if (!real)                                                                                       \
            real = (open_fn)dlsym(RTLD_NEXT, #name);                                                     \
        va_list ap;                                                                                      \
        va_start(ap, flags);                                                                             \
        mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;                          \
        va_end(ap);                                                                                      \
        return real(path, flags, mode);                                                                  \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                                                 \
    int name(int dirfd, const char *path, int flags, ...) {                                               \
        if (is_shim_path(path))                                                                          \
            return connect_models();                                                                     \
        static openat_fn real;                                                                           \
        if (!real)                                                                                       \
            real = (openat_fn)dlsym(RTLD_NEXT, #name);                                                   \
        va_list ap;                                                                                      \
        va_start(ap, flags);                                                                             \
        mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;                          \
        va_end(ap);                                                                                      \
        return real(dirfd, path, flags, mode);                                                           \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int close(int fd) {
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fd >= 0 && fd < MAX_FD)
        shim_fd[fd] = 0;
    return real(fd);
}

static int full_write(int fd, const void *b, size_t n) {
    const char *p = b;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int full_read(int fd, void *b, size_t n) {
    char *p = b;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int rdwr(int fd, struct i2c_rdwr_ioctl_data *d) {
    unsigned char buf[8192];
    size_t n = 0;
    if (d->nmsgs > 42) {
        errno = EINVAL;
        return -1;
    }
    buf[n++] = (unsigned char)d->nmsgs;
    for (unsigned i = 0; i < d->nmsgs; i++) {
        struct i2c_msg *m = &d->msgs[i];
        if (n + 6 + m->len > sizeof buf) {
            errno = EINVAL;
            return -1;
        }
        memcpy(buf + n, &m->addr, 2);
        memcpy(buf + n + 2, &m->flags, 2);
        memcpy(buf + n + 4, &m->len, 2);
        n += 6;
        if (!(m->flags & I2C_M_RD)) {
            memcpy(buf + n, m->buf, m->len);
            n += m->len;
        }
    }
    pthread_mutex_lock(&lock);
    int32_t err = 0;
    int ok = full_write(fd, buf, n) == 0 && full_read(fd, &err, 4) == 0;
    if (ok && err == 0) {
        for (unsigned i = 0; ok && i < d->nmsgs; i++)
            if (d->msgs[i].flags & I2C_M_RD)
                ok = full_read(fd, d->msgs[i].buf, d->msgs[i].len) == 0;
    }
    pthread_mutex_unlock(&lock);
    if (!ok) {
        errno = EIO;
        return -1;
    }
    if (err) {
        errno = err;
        return -1;
    }
    return (int)d->nmsgs;
}

int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fd >= 0 && fd < MAX_FD && shim_fd[fd]) {
        switch (req) {
        case I2C_SLAVE:
        case I2C_SLAVE_FORCE:
        case I2C_PEC:
            return 0;
        case I2C_FUNCS:
            *(unsigned long *)arg = I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL;
            return 0;
        case I2C_RDWR:
            return rdwr(fd, (struct i2c_rdwr_ioctl_data *)arg);
        default:
            errno = ENOTTY;
            return -1;
        }
    }
    static int (*real)(int, unsigned long, ...);
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}
