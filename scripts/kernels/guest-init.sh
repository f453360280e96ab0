#!/bin/busybox sh
# PID 1 of a matrix guest. The host's root comes read-only over virtio-9p and becomes
# the lower layer of an overlay whose upper layer is a tmpfs: the whole tree is writable
# inside the guest and nothing reaches the host. The one host-visible folder is the
# writable "ksmout" share: it holds the job to run and receives its results. The job's
# exit status goes to ksmout/status and, as a marker line, to the console.
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "ksm-guest: $*" > /dev/console; }
finish() {
  echo "KSM-GUEST-EXIT $1" > /dev/console
  sync
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

for module in $(cat /modules/load-order); do
  insmod "/modules/$module.ko" || { say "insmod $module failed"; finish 120; }
done

# cache=loose: the lower layer is read-only, and caching makes 9p fast enough for node.
NINEP=trans=virtio,version=9p2000.L,msize=512000,cache=loose
mount -t 9p -o "ro,$NINEP" hostroot /lower || { say 'mounting the host root failed'; finish 121; }
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || { say 'overlay failed'; finish 122; }

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs shm $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mkdir -p $R/ksm-guest-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 ksmout $R/ksm-guest-out || { say 'mounting ksmout failed'; finish 123; }
# Fresh /tmp and /run hide the host's; a repository checked out under one of them
# (CI may clone there) is kept visible at its own path.
REPO=$(sed -n "s/^cd '\(.*\)' || exit 125\$/\1/p" $R/ksm-guest-out/job.sh)
case "$REPO" in
  /tmp/*|/run/*) mkdir -p /repo && mount -o bind "$R$REPO" /repo || { say "keeping $REPO failed"; finish 124; } ;;
  *) REPO= ;;
esac
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=0755 run $R/run
if [ -n "$REPO" ]; then
  mkdir -p "$R$REPO" && mount -o move /repo "$R$REPO" || { say "keeping $REPO failed"; finish 124; }
fi
ip link set lo up
hostname ksm-guest

say "kernel $(uname -r), running the job"
chroot $R /bin/sh /ksm-guest-out/job.sh < /dev/console > /dev/console 2>&1
status=$?
echo "$status" > $R/ksm-guest-out/status
finish "$status"
