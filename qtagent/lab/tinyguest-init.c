/*
 * /init of the tiny guest (qtagent/lab/tinyguest.py): mount /proc and /sys,
 * print "tinyguest: up <seconds since kernel start>", then print the PCI
 * devices the kernel sees - "tinyguest: pci <address>=<vendor>:<device> ..."
 * in sysfs spelling (0x8086:0x10ca) - at start and whenever they change.
 *
 * Freestanding: no libc, raw x86_64 system calls, a few KB. Under TCG inside
 * TCG every newly executed instruction is translated twice, so a shell
 * (busybox ash: tens of seconds to start there) is too costly; this is not.
 * Built by scripts/build-tiny-kernel.sh:
 *   gcc -Os -static -nostdlib -ffreestanding -fno-pie -no-pie -o tiny-init THIS
 */

typedef unsigned long size_t;
typedef long ssize_t;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_nanosleep 35
#define SYS_getdents64 217
#define SYS_mount 165
#define O_RDONLY 0
#define O_DIRECTORY 0200000

#define MAX_DEVICES 64
#define NAME_LEN 16 /* "0000:00:00.0" plus NUL */
#define LINE_LEN (32 + MAX_DEVICES * 32)
#define POLL_NS 250000000L /* 0.25 s */

static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static long sys5(long n, long a, long b, long c, long d, long e)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static size_t len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static void put(const char *s)
{
    size_t n = len(s);
    while (n > 0) {
        long done = sys3(SYS_write, 1, (long)s, (long)n);
        if (done <= 0)
            return;
        s += done;
        n -= (size_t)done;
    }
}

static char *append(char *at, const char *end, const char *s)
{
    while (*s && at < end)
        *at++ = *s++;
    *at = 0;
    return at;
}

/* The first word of a small file (sysfs attribute, /proc/uptime) into buf. */
static int read_word(const char *path, char *buf, size_t size)
{
    long fd = sys3(SYS_open, (long)path, O_RDONLY, 0);
    if (fd < 0)
        return -1;
    long n = sys3(SYS_read, fd, (long)buf, (long)size - 1);
    sys3(SYS_close, fd, 0, 0);
    if (n < 0)
        return -1;
    buf[n] = 0;
    for (long i = 0; i < n; i++)
        if (buf[i] == ' ' || buf[i] == '\n')
            buf[i] = 0;
    return 0;
}

struct dirent64 {
    unsigned long ino;
    long off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

static char names[MAX_DEVICES][NAME_LEN];

/* Sorted names in /sys/bus/pci/devices; returns their count (-1: no sysfs). */
static int pci_devices(void)
{
    static char dents[4096] __attribute__((aligned(8)));
    long fd = sys3(SYS_open, (long)"/sys/bus/pci/devices", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return -1;
    int count = 0;
    for (;;) {
        long n = sys3(SYS_getdents64, fd, (long)dents, sizeof(dents));
        if (n <= 0)
            break;
        for (long at = 0; at < n;) {
            struct dirent64 *d = (struct dirent64 *)(dents + at);
            at += d->reclen;
            if (d->name[0] == '.' || len(d->name) >= NAME_LEN || count == MAX_DEVICES)
                continue;
            int i = count++;
            /* insertion sort: a handful of devices */
            while (i > 0) {
                const char *a = names[i - 1], *b = d->name;
                while (*a && *a == *b)
                    a++, b++;
                if ((unsigned char)*a <= (unsigned char)*b)
                    break;
                append(names[i], names[i] + NAME_LEN - 1, names[i - 1]);
                i--;
            }
            append(names[i], names[i] + NAME_LEN - 1, d->name);
        }
    }
    sys3(SYS_close, fd, 0, 0);
    return count;
}

static void pci_line(char *line)
{
    char *end = line + LINE_LEN - 1, path[64], word[16];
    char *at = append(line, end, "tinyguest: pci");
    int count = pci_devices();
    for (int i = 0; i < count; i++) {
        char *p = append(path, path + sizeof(path) - 1, "/sys/bus/pci/devices/");
        p = append(p, path + sizeof(path) - 1, names[i]);
        at = append(at, end, " ");
        at = append(at, end, names[i]);
        at = append(at, end, "=");
        append(p, path + sizeof(path) - 1, "/vendor");
        at = append(at, end, read_word(path, word, sizeof(word)) ? "?" : word);
        at = append(at, end, ":");
        append(p, path + sizeof(path) - 1, "/device");
        at = append(at, end, read_word(path, word, sizeof(word)) ? "?" : word);
    }
    append(at, end, "\n");
}

void _start(void)
{
    static char line[LINE_LEN], last[LINE_LEN];
    char uptime[32];
    const struct {
        long sec, nsec;
    } poll = {0, POLL_NS};

    sys5(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", 0, 0);
    sys5(SYS_mount, (long)"sysfs", (long)"/sys", (long)"sysfs", 0, 0);
    put("tinyguest: up ");
    put(read_word("/proc/uptime", uptime, sizeof(uptime)) ? "?" : uptime);
    put("\n");
    for (;;) {
        pci_line(line);
        if (!same(line, last)) {
            put(line);
            append(last, last + LINE_LEN - 1, line);
        }
        sys3(SYS_nanosleep, (long)&poll, 0, 0);
    }
}
