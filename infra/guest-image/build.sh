#!/usr/bin/env bash
# Builds the `tiny` guest image from Debian packages only:
#   vmlinux     Debian's generic kernel, decompressed so QEMU boots it through PVH
#               (the xz-compressed bzImage takes ~5 s to unpack under TCG; vmlinux ~2 s)
#   initrd.img  busybox-static, init.sh, the kernel modules for every profile device, and the
#               power-button handler (acpid runs power-button.sh: the guest powers off on ACPI)
#   data.qcow2  the read-only base of each vm's writable disk (ext4, 64 MiB)
# The result lives in $IMAGES_DIR/tiny-<content hash>; $IMAGES_DIR/tiny points at it.
# A second run with the same inputs does nothing.
#
# Why the generic kernel and not the cloud one: the cloud kernel has no USB, AHCI, e1000
# or parport drivers, and QEMU routes keystrokes to the profile's USB keyboard, so a
# cloud-kernel guest cannot be typed into from the console.
# PVH boot leaves the kernel no VGA text mode to write to, so the console shell is drawn by
# fbcon on the bochs DRM driver (display-modules.txt), loaded after the boot marker: under TCG
# it takes ~2.5 s, and the serial contract should not wait for it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
images_dir="${1:-${FERRY_IMAGES_DIR:-${FERRY_STATE_DIR:-/var/lib/ferry}/images}}"
mkdir -p "$images_dir"

for tool in apt-get apt-cache dpkg-deb cpio gzip xz mke2fs qemu-img sha256sum; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: '$tool' is missing; run infra/setup.sh first (it installs the Debian packages)." >&2
    exit 1
  }
done
[ -x /bin/busybox ] && /bin/busybox --list | grep -x cttyhack >/dev/null || {
  echo "build.sh: /bin/busybox is not busybox-static; apt-get install busybox-static" >&2
  exit 1
}

kernel_pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
if [ -z "$kernel_pkg" ]; then
  apt-get update -qq
  kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
fi
kernel_ver="$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/{print $2}')"
busybox_ver="$(dpkg-query -W -f '${Version}' busybox-static)"

hash="$(cat "$here/build.sh" "$here/init.sh" "$here/power-button.sh" "$here/banner.txt" "$here/modules.txt" "$here/display-modules.txt" \
  <(echo "$kernel_pkg $kernel_ver busybox-static $busybox_ver") | sha256sum | cut -c1-16)"
final="$images_dir/tiny-$hash"

if [ -f "$final/manifest.json" ]; then
  ln -sfn "tiny-$hash" "$images_dir/tiny.tmp" && mv -T "$images_dir/tiny.tmp" "$images_dir/tiny"
  echo "$final"
  exit 0
fi

work="$(mktemp -d "$images_dir/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

(cd "$work" && apt-get download "$kernel_pkg=$kernel_ver" >/dev/null 2>&1) || {
  echo "build.sh: could not download $kernel_pkg $kernel_ver from Debian's archive; check apt sources and run apt-get update." >&2
  exit 1
}
dpkg-deb -x ./*.deb pkg
krel="$(ls pkg/lib/modules)"
mkdir -p out

# vmlinuz is a bzImage carrying an xz stream; PVH needs the ELF inside it.
offset="$(grep -abo "$(printf '\3757zXZ')" "pkg/boot/vmlinuz-$krel" | head -1 | cut -d: -f1)"
tail -c "+$((offset + 1))" "pkg/boot/vmlinuz-$krel" | xz -dc 2>/dev/null > out/vmlinux || true
head -c 4 out/vmlinux | grep -q ELF || { echo "build.sh: could not unpack vmlinux from $kernel_pkg" >&2; exit 1; }

# Resolve module dependencies from each module's own .modinfo (no depmod needed).
declare -A mod_path
while IFS= read -r f; do
  n="$(basename "$f" .ko)"; mod_path["${n//-/_}"]="$f"
done < <(find "pkg/lib/modules/$krel/kernel" -name '*.ko')
declare -A seen
order=()
add_module() {
  local name="${1//-/_}"
  [ -n "${seen[$name]:-}" ] && return
  seen[$name]=1
  local f="${mod_path[$name]:-}"
  [ -n "$f" ] || { echo "build.sh: module $name not in $kernel_pkg" >&2; exit 1; }
  local deps
  deps="$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')"
  for d in $deps; do add_module "$d"; done
  order+=("$name")
}
while read -r m; do [ -n "$m" ] && add_module "$m"; done < "$here/modules.txt"
boot_count=${#order[@]}
while read -r m; do [ -n "$m" ] && add_module "$m"; done < "$here/display-modules.txt"

root="$work/initramfs"
mkdir -p "$root"/{bin,etc,lib/modules,dev,proc,sys,data,tmp}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"
cp "$here/banner.txt" "$root/etc/banner"
mkdir -p "$root/etc/acpi/PWRF"
cp "$here/power-button.sh" "$root/etc/acpi/PWRF/00000080"
chmod 755 "$root/etc/acpi/PWRF/00000080"
for i in "${!order[@]}"; do
  m="${order[$i]}"
  cp "${mod_path[$m]}" "$root/lib/modules/$m.ko"
  if [ "$i" -lt "$boot_count" ]; then echo "$m" >> "$root/etc/modules"; else echo "$m" >> "$root/etc/modules.display"; fi
done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9) > out/initrd.img

mkdir -p datafs
echo "This is the writable disk of a Ferry tiny guest." > datafs/README
mke2fs -q -F -t ext4 -L ferry-data -d datafs out/data.raw 64M >/dev/null
qemu-img convert -f raw -O qcow2 out/data.raw out/data.qcow2
rm out/data.raw
chmod 444 out/data.qcow2

cat > out/manifest.json <<JSON
{
  "name": "tiny",
  "hash": "$hash",
  "kernel": "vmlinux",
  "initrd": "initrd.img",
  "cmdline": "console=tty0 console=ttyS0 quiet",
  "baseDisk": "data.qcow2",
  "kernelPackage": "$kernel_pkg $kernel_ver",
  "busybox": "$busybox_ver",
  "bootMarker": "FERRY-BOOT-OK"
}
JSON

rm -rf "$final"
mv out "$final"
ln -sfn "tiny-$hash" "$images_dir/tiny.tmp" && mv -T "$images_dir/tiny.tmp" "$images_dir/tiny"
echo "$final"
