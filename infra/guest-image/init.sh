#!/bin/busybox sh
# PID 1 of the tiny guest. Its serial output is a contract with Ferry's tests:
# FERRY-BOOT-OK once, then "ferry-tick N uptime=S" every second.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /data /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

# Drivers for every device a Ferry hardware profile presents, in dependency order.
while read -r m; do insmod "/lib/modules/$m.ko" 2>/dev/null; done < /etc/modules

# The power button: acpid reads the button's evdev device and runs /etc/acpi/PWRF/00000080
# on a press, which powers the guest off. acpid opens /dev/input/event0, event1, … up to the
# first missing one, and devtmpfs creates those nodes asynchronously: wait for the node of
# every input device sysfs lists. A press before acpid holds the button is lost, and a vm may
# be stopped the moment it prints its boot marker: so the marker waits for acpid too.
mkdir -p /var/run
events=0
for i in $(seq 200); do
  events=0
  ready=1
  for e in /sys/class/input/event*; do
    events=$((events + 1))
    [ -e "/dev/input/${e##*/}" ] || ready=""
  done
  [ -n "$ready" ] && break
  sleep 0.01
done
acpid -f -c /etc/acpi -l /dev/null &
acpid_pid=$!
for i in $(seq 200); do
  [ "$(ls -l /proc/$acpid_pid/fd 2>/dev/null | grep -c /dev/input/event)" -ge "$events" ] && break
  sleep 0.01
done

serial=/dev/ttyS0
echo "FERRY-BOOT-OK kernel=$(uname -r)" > $serial

disk=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /dev/vda /dev/sda; do [ -b "$d" ] && disk=$d && break 2; done
  sleep 0.2
done
if [ -n "$disk" ] && mount -t ext4 "$disk" /data; then
  echo "FERRY-DISK-OK $disk" > $serial
else
  echo "FERRY-DISK-MISSING" > $serial
fi

# The screen (bochs DRM + fbcon) comes up in the background; the shell on tty1 is redrawn then.
( while read -r m; do insmod "/lib/modules/$m.ko" 2>/dev/null; done < /etc/modules.display ) &

[ -e /dev/lp0 ] && echo "FERRY-PARALLEL-OK" > /dev/lp0 &

hostname ferry-tiny
printf 'clear\ncat /etc/banner\n' > /etc/profile
export PS1="ferry-tiny:\w# "
(
  while true; do
    setsid sh -c 'exec sh -l < /dev/tty1 > /dev/tty1 2>&1' 
  done
) &

i=0
while true; do
  echo "ferry-tick $i uptime=$(cut -d' ' -f1 /proc/uptime)" > $serial
  i=$((i + 1))
  sleep 1
done
