"""Code page 437 glyphs, 8x16 pixels: the VGA font of the text-mode renderer.

Converted from console-setup's FullGreek-VGA16.psf and Uni2-VGA16.psf (Debian package
console-setup-linux), both made from the BDF font u_vga16.bdf; the glyphs 0x00, 0x10, 0x11
they lack are drawn by Triplefault (the blank and two triangles). The font's terms:

    Copyright (c) 2000, 2001 by Dmitry Bolkhovityanov.  All Rights Reserved.

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in
    all copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.  IN NO EVENT SHALL THE
    XFREE86 PROJECT BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
    IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
    CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

    Except as contained in this notice, the name of Dmitry Bolkhovityanov shall
    not be used in advertising or otherwise to promote the sale, use or other
    dealings in this Software without prior written authorization from
    Dmitry Bolkhovityanov.

GLYPHS[c] holds 16 bytes, one per scan line, most significant bit leftmost, for CP437 code c.
"""

GLYPHS: tuple[bytes, ...] = (
    bytes.fromhex("00000000000000000000000000000000"),  # 0x00
    bytes.fromhex("00007e81a58181a59981817e00000000"),  # 0x01
    bytes.fromhex("00007effdbffffdbe7ffff7e00000000"),  # 0x02
    bytes.fromhex("000000006cfefefefe7c381000000000"),  # 0x03
    bytes.fromhex("0000000010387cfe7c38100000000000"),  # 0x04
    bytes.fromhex("000000183c3ce7e7e718183c00000000"),  # 0x05
    bytes.fromhex("000000183c7effff7e18183c00000000"),  # 0x06
    bytes.fromhex("000000000000183c3c18000000000000"),  # 0x07
    bytes.fromhex("ffffffffffffe7c3c3e7ffffffffffff"),  # 0x08
    bytes.fromhex("00003c42818181818181423c00000000"),  # 0x09
    bytes.fromhex("ffffc3bd7e7e7e7e7e7ebdc3ffffffff"),  # 0x0a
    bytes.fromhex("00001e060e1a78cccccccc7800000000"),  # 0x0b
    bytes.fromhex("00003c666666663c187e181800000000"),  # 0x0c
    bytes.fromhex("0000303c3e3230303070f0e000000000"),  # 0x0d
    bytes.fromhex("0000707f6f63636363e3e7c706000000"),  # 0x0e
    bytes.fromhex("00000010105428c62854101000000000"),  # 0x0f
    bytes.fromhex("00000000c0e0f0f8fcf8f0e0c0000000"),  # 0x10
    bytes.fromhex("0000000003070f1f3f1f0f0703000000"),  # 0x11
    bytes.fromhex("0000183c7e1818187e3c180000000000"),  # 0x12
    bytes.fromhex("00006666666666666600666600000000"),  # 0x13
    bytes.fromhex("00007fdbdbdb7b1b1b1b1b1b00000000"),  # 0x14
    bytes.fromhex("007cc660386cc6c66c380cc67c000000"),  # 0x15
    bytes.fromhex("00000000000000fefefefefe00000000"),  # 0x16
    bytes.fromhex("0000183c7e1818187e3c187e00000000"),  # 0x17
    bytes.fromhex("0000183c7e1818181818181800000000"),  # 0x18
    bytes.fromhex("0000181818181818187e3c1800000000"),  # 0x19
    bytes.fromhex("00000000000c06ff060c000000000000"),  # 0x1a
    bytes.fromhex("00000000003060ff6030000000000000"),  # 0x1b
    bytes.fromhex("000000000000c0c0c0c0c0fe00000000"),  # 0x1c
    bytes.fromhex("00000000002466ff6624000000000000"),  # 0x1d
    bytes.fromhex("00000000001038387c7cfefe00000000"),  # 0x1e
    bytes.fromhex("0000fefe7c7c38381000000000000000"),  # 0x1f
    bytes.fromhex("00000000000000000000000000000000"),  # 0x20
    bytes.fromhex("0000183c3c3c18181800181800000000"),  # 0x21
    bytes.fromhex("00666666240000000000000000000000"),  # 0x22
    bytes.fromhex("0000006c6cfe6c6c6cfe6c6c00000000"),  # 0x23
    bytes.fromhex("18187cc6c2c07c060686c67c18180000"),  # 0x24
    bytes.fromhex("00000000c2c60c183060c68600000000"),  # 0x25
    bytes.fromhex("0000386c6c3876dccccccc7600000000"),  # 0x26
    bytes.fromhex("00303030200000000000000000000000"),  # 0x27
    bytes.fromhex("00000c18303030303030180c00000000"),  # 0x28
    bytes.fromhex("000030180c0c0c0c0c0c183000000000"),  # 0x29
    bytes.fromhex("0000000000663cff3c66000000000000"),  # 0x2a
    bytes.fromhex("000000000018187e1818000000000000"),  # 0x2b
    bytes.fromhex("00000000000000000018181830000000"),  # 0x2c
    bytes.fromhex("00000000000000fe0000000000000000"),  # 0x2d
    bytes.fromhex("00000000000000000000181800000000"),  # 0x2e
    bytes.fromhex("0000000002060c183060c08000000000"),  # 0x2f
    bytes.fromhex("0000386cc6c6d6d6c6c66c3800000000"),  # 0x30
    bytes.fromhex("00001838781818181818187e00000000"),  # 0x31
    bytes.fromhex("00007cc6060c183060c0c6fe00000000"),  # 0x32
    bytes.fromhex("00007cc606063c060606c67c00000000"),  # 0x33
    bytes.fromhex("00000c1c3c6cccfe0c0c0c1e00000000"),  # 0x34
    bytes.fromhex("0000fec0c0c0fc060606c67c00000000"),  # 0x35
    bytes.fromhex("00003860c0c0fcc6c6c6c67c00000000"),  # 0x36
    bytes.fromhex("0000fec606060c183030303000000000"),  # 0x37
    bytes.fromhex("00007cc6c6c67cc6c6c6c67c00000000"),  # 0x38
    bytes.fromhex("00007cc6c6c67e0606060c7800000000"),  # 0x39
    bytes.fromhex("00000000181800000018180000000000"),  # 0x3a
    bytes.fromhex("00000000181800000018183000000000"),  # 0x3b
    bytes.fromhex("000000060c18306030180c0600000000"),  # 0x3c
    bytes.fromhex("00000000007e00007e00000000000000"),  # 0x3d
    bytes.fromhex("0000006030180c060c18306000000000"),  # 0x3e
    bytes.fromhex("00007cc6c60c18181800181800000000"),  # 0x3f
    bytes.fromhex("0000007cc6c6dedededcc07c00000000"),  # 0x40
    bytes.fromhex("000010386cc6c6fec6c6c6c600000000"),  # 0x41
    bytes.fromhex("0000fc6666667c66666666fc00000000"),  # 0x42
    bytes.fromhex("00003c66c2c0c0c0c0c2663c00000000"),  # 0x43
    bytes.fromhex("0000f86c6666666666666cf800000000"),  # 0x44
    bytes.fromhex("0000fe6662687868606266fe00000000"),  # 0x45
    bytes.fromhex("0000fe6662687868606060f000000000"),  # 0x46
    bytes.fromhex("00003c66c2c0c0dec6c6663a00000000"),  # 0x47
    bytes.fromhex("0000c6c6c6c6fec6c6c6c6c600000000"),  # 0x48
    bytes.fromhex("00003c18181818181818183c00000000"),  # 0x49
    bytes.fromhex("00001e0c0c0c0c0ccccccc7800000000"),  # 0x4a
    bytes.fromhex("0000e666666c78786c6666e600000000"),  # 0x4b
    bytes.fromhex("0000f06060606060606266fe00000000"),  # 0x4c
    bytes.fromhex("0000c6eefefed6c6c6c6c6c600000000"),  # 0x4d
    bytes.fromhex("0000c6e6f6fedecec6c6c6c600000000"),  # 0x4e
    bytes.fromhex("00007cc6c6c6c6c6c6c6c67c00000000"),  # 0x4f
    bytes.fromhex("0000fc6666667c60606060f000000000"),  # 0x50
    bytes.fromhex("00007cc6c6c6c6c6c6d6de7c0c0e0000"),  # 0x51
    bytes.fromhex("0000fc6666667c6c666666e600000000"),  # 0x52
    bytes.fromhex("00007cc6c660380c06c6c67c00000000"),  # 0x53
    bytes.fromhex("00007e7e5a1818181818183c00000000"),  # 0x54
    bytes.fromhex("0000c6c6c6c6c6c6c6c6c67c00000000"),  # 0x55
    bytes.fromhex("0000c6c6c6c6c6c6c66c381000000000"),  # 0x56
    bytes.fromhex("0000c6c6c6c6d6d6d6feee6c00000000"),  # 0x57
    bytes.fromhex("0000c6c66c7c38387c6cc6c600000000"),  # 0x58
    bytes.fromhex("0000666666663c181818183c00000000"),  # 0x59
    bytes.fromhex("0000fec6860c183060c2c6fe00000000"),  # 0x5a
    bytes.fromhex("00003c30303030303030303c00000000"),  # 0x5b
    bytes.fromhex("00000080c0e070381c0e060200000000"),  # 0x5c
    bytes.fromhex("00003c0c0c0c0c0c0c0c0c3c00000000"),  # 0x5d
    bytes.fromhex("10386cc6000000000000000000000000"),  # 0x5e
    bytes.fromhex("00000000000000000000000000ff0000"),  # 0x5f
    bytes.fromhex("30301800000000000000000000000000"),  # 0x60
    bytes.fromhex("0000000000780c7ccccccc7600000000"),  # 0x61
    bytes.fromhex("0000e06060786c666666667c00000000"),  # 0x62
    bytes.fromhex("00000000007cc6c0c0c0c67c00000000"),  # 0x63
    bytes.fromhex("00001c0c0c3c6ccccccccc7600000000"),  # 0x64
    bytes.fromhex("00000000007cc6fec0c0c67c00000000"),  # 0x65
    bytes.fromhex("0000386c6460f060606060f000000000"),  # 0x66
    bytes.fromhex("000000000076cccccccccc7c0ccc7800"),  # 0x67
    bytes.fromhex("0000e060606c7666666666e600000000"),  # 0x68
    bytes.fromhex("00001818003818181818183c00000000"),  # 0x69
    bytes.fromhex("00000606000e06060606060666663c00"),  # 0x6a
    bytes.fromhex("0000e06060666c78786c66e600000000"),  # 0x6b
    bytes.fromhex("00003818181818181818183c00000000"),  # 0x6c
    bytes.fromhex("0000000000ecfed6d6d6d6c600000000"),  # 0x6d
    bytes.fromhex("0000000000dc66666666666600000000"),  # 0x6e
    bytes.fromhex("00000000007cc6c6c6c6c67c00000000"),  # 0x6f
    bytes.fromhex("0000000000dc66666666667c6060f000"),  # 0x70
    bytes.fromhex("000000000076cccccccccc7c0c0c1e00"),  # 0x71
    bytes.fromhex("0000000000dc7666606060f000000000"),  # 0x72
    bytes.fromhex("00000000007cc660380cc67c00000000"),  # 0x73
    bytes.fromhex("0000103030fc30303030361c00000000"),  # 0x74
    bytes.fromhex("0000000000cccccccccccc7600000000"),  # 0x75
    bytes.fromhex("000000000066666666663c1800000000"),  # 0x76
    bytes.fromhex("0000000000c6c6d6d6d6fe6c00000000"),  # 0x77
    bytes.fromhex("0000000000c66c3838386cc600000000"),  # 0x78
    bytes.fromhex("0000000000c6c6c6c6c6c67e060cf800"),  # 0x79
    bytes.fromhex("0000000000fecc183060c6fe00000000"),  # 0x7a
    bytes.fromhex("00000e18181870181818180e00000000"),  # 0x7b
    bytes.fromhex("00001818181818181818181800000000"),  # 0x7c
    bytes.fromhex("0000701818180e181818187000000000"),  # 0x7d
    bytes.fromhex("000076dc000000000000000000000000"),  # 0x7e
    bytes.fromhex("0000000010386cc6c6c6fe0000000000"),  # 0x7f
    bytes.fromhex("00003c66c2c0c0c0c0c2663c180c3800"),  # 0x80
    bytes.fromhex("0000cccc00cccccccccccc7600000000"),  # 0x81
    bytes.fromhex("00000c18007cc6fec0c0c67c00000000"),  # 0x82
    bytes.fromhex("0010386c00780c7ccccccc7600000000"),  # 0x83
    bytes.fromhex("00006c6c00780c7ccccccc7600000000"),  # 0x84
    bytes.fromhex("0000603000780c7ccccccc7600000000"),  # 0x85
    bytes.fromhex("00386c3800780c7ccccccc7600000000"),  # 0x86
    bytes.fromhex("00000000007cc6c0c0c0c67c180c3800"),  # 0x87
    bytes.fromhex("0010386c007cc6fec0c0c67c00000000"),  # 0x88
    bytes.fromhex("00006c6c007cc6fec0c0c67c00000000"),  # 0x89
    bytes.fromhex("00006030007cc6fec0c0c67c00000000"),  # 0x8a
    bytes.fromhex("00006666003818181818183c00000000"),  # 0x8b
    bytes.fromhex("0010386c003818181818183c00000000"),  # 0x8c
    bytes.fromhex("00003018003818181818183c00000000"),  # 0x8d
    bytes.fromhex("6c6c0010386cc6c6fec6c6c600000000"),  # 0x8e
    bytes.fromhex("386c3810386cc6c6fec6c6c600000000"),  # 0x8f
    bytes.fromhex("0c1800fe66626878686266fe00000000"),  # 0x90
    bytes.fromhex("0000000000cc76367ed8d86e00000000"),  # 0x91
    bytes.fromhex("00003e6cccccfeccccccccce00000000"),  # 0x92
    bytes.fromhex("0010386c007cc6c6c6c6c67c00000000"),  # 0x93
    bytes.fromhex("00006c6c007cc6c6c6c6c67c00000000"),  # 0x94
    bytes.fromhex("00006030007cc6c6c6c6c67c00000000"),  # 0x95
    bytes.fromhex("0010386c00cccccccccccc7600000000"),  # 0x96
    bytes.fromhex("0000603000cccccccccccc7600000000"),  # 0x97
    bytes.fromhex("00006c6c00c6c6c6c6c6c67e060cf800"),  # 0x98
    bytes.fromhex("6c6c007cc6c6c6c6c6c6c67c00000000"),  # 0x99
    bytes.fromhex("6c6c00c6c6c6c6c6c6c6c67c00000000"),  # 0x9a
    bytes.fromhex("0018183c66606060663c181800000000"),  # 0x9b
    bytes.fromhex("00386c6460f060606060e6fc00000000"),  # 0x9c
    bytes.fromhex("000066663c187e187e18181800000000"),  # 0x9d
    bytes.fromhex("0000fc66667c62666f6666f300000000"),  # 0x9e
    bytes.fromhex("00001c3632307830303030303030e000"),  # 0x9f
    bytes.fromhex("0000183000780c7ccccccc7600000000"),  # 0xa0
    bytes.fromhex("00000c18003818181818183c00000000"),  # 0xa1
    bytes.fromhex("00000c18007cc6c6c6c6c67c00000000"),  # 0xa2
    bytes.fromhex("0000183000cccccccccccc7600000000"),  # 0xa3
    bytes.fromhex("000076dc00dc66666666666600000000"),  # 0xa4
    bytes.fromhex("76dc00c6e6f6fedecec6c6c600000000"),  # 0xa5
    bytes.fromhex("003c6c6c3e007e000000000000000000"),  # 0xa6
    bytes.fromhex("00386c6c38007c000000000000000000"),  # 0xa7
    bytes.fromhex("0000303000303060c0c6c67c00000000"),  # 0xa8
    bytes.fromhex("000000000000fec0c0c0c00000000000"),  # 0xa9
    bytes.fromhex("000000000000fe060606060000000000"),  # 0xaa
    bytes.fromhex("00c0c0c2c6cc183060dc860c183e0000"),  # 0xab
    bytes.fromhex("00c0c0c2c6cc183066ce9e3e06060000"),  # 0xac
    bytes.fromhex("00001818001818183c3c3c1800000000"),  # 0xad
    bytes.fromhex("0000000000366cd86c36000000000000"),  # 0xae
    bytes.fromhex("0000000000d86c366cd8000000000000"),  # 0xaf
    bytes.fromhex("11441144114411441144114411441144"),  # 0xb0
    bytes.fromhex("55aa55aa55aa55aa55aa55aa55aa55aa"),  # 0xb1
    bytes.fromhex("dd77dd77dd77dd77dd77dd77dd77dd77"),  # 0xb2
    bytes.fromhex("18181818181818181818181818181818"),  # 0xb3
    bytes.fromhex("18181818181818f81818181818181818"),  # 0xb4
    bytes.fromhex("181818181818f818f818181818181818"),  # 0xb5
    bytes.fromhex("36363636363636f63636363636363636"),  # 0xb6
    bytes.fromhex("00000000000000fe3636363636363636"),  # 0xb7
    bytes.fromhex("000000000000f818f818181818181818"),  # 0xb8
    bytes.fromhex("363636363636f606f636363636363636"),  # 0xb9
    bytes.fromhex("36363636363636363636363636363636"),  # 0xba
    bytes.fromhex("000000000000fe06f636363636363636"),  # 0xbb
    bytes.fromhex("363636363636f606fe00000000000000"),  # 0xbc
    bytes.fromhex("36363636363636fe0000000000000000"),  # 0xbd
    bytes.fromhex("181818181818f818f800000000000000"),  # 0xbe
    bytes.fromhex("00000000000000f81818181818181818"),  # 0xbf
    bytes.fromhex("181818181818181f0000000000000000"),  # 0xc0
    bytes.fromhex("18181818181818ff0000000000000000"),  # 0xc1
    bytes.fromhex("00000000000000ff1818181818181818"),  # 0xc2
    bytes.fromhex("181818181818181f1818181818181818"),  # 0xc3
    bytes.fromhex("00000000000000ff0000000000000000"),  # 0xc4
    bytes.fromhex("18181818181818ff1818181818181818"),  # 0xc5
    bytes.fromhex("1818181818181f181f18181818181818"),  # 0xc6
    bytes.fromhex("36363636363636373636363636363636"),  # 0xc7
    bytes.fromhex("36363636363637303f00000000000000"),  # 0xc8
    bytes.fromhex("0000000000003f303736363636363636"),  # 0xc9
    bytes.fromhex("363636363636f700ff00000000000000"),  # 0xca
    bytes.fromhex("000000000000ff00f736363636363636"),  # 0xcb
    bytes.fromhex("36363636363637303736363636363636"),  # 0xcc
    bytes.fromhex("000000000000ff00ff00000000000000"),  # 0xcd
    bytes.fromhex("363636363636f700f736363636363636"),  # 0xce
    bytes.fromhex("181818181818ff00ff00000000000000"),  # 0xcf
    bytes.fromhex("36363636363636ff0000000000000000"),  # 0xd0
    bytes.fromhex("000000000000ff00ff18181818181818"),  # 0xd1
    bytes.fromhex("00000000000000ff3636363636363636"),  # 0xd2
    bytes.fromhex("363636363636363f0000000000000000"),  # 0xd3
    bytes.fromhex("1818181818181f181f00000000000000"),  # 0xd4
    bytes.fromhex("0000000000001f181f18181818181818"),  # 0xd5
    bytes.fromhex("000000000000003f3636363636363636"),  # 0xd6
    bytes.fromhex("36363636363636ff3636363636363636"),  # 0xd7
    bytes.fromhex("181818181818ff18ff18181818181818"),  # 0xd8
    bytes.fromhex("18181818181818f80000000000000000"),  # 0xd9
    bytes.fromhex("000000000000001f1818181818181818"),  # 0xda
    bytes.fromhex("ffffffffffffffffffffffffffffffff"),  # 0xdb
    bytes.fromhex("0000000000000000ffffffffffffffff"),  # 0xdc
    bytes.fromhex("f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),  # 0xdd
    bytes.fromhex("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"),  # 0xde
    bytes.fromhex("ffffffffffffff000000000000000000"),  # 0xdf
    bytes.fromhex("000000000076cccccccccc7600000000"),  # 0xe0
    bytes.fromhex("00003c6666666c66666666ec00000000"),  # 0xe1
    bytes.fromhex("0000fe6662606060606060f000000000"),  # 0xe2
    bytes.fromhex("0000000000fe6c6c6c6c6c6600000000"),  # 0xe3
    bytes.fromhex("0000fec6623018183062c6fe00000000"),  # 0xe4
    bytes.fromhex("00000000007ecccccccccc7800000000"),  # 0xe5
    bytes.fromhex("0000000000ccccccccccccf6c0c0c000"),  # 0xe6
    bytes.fromhex("00000000007e18181818180e00000000"),  # 0xe7
    bytes.fromhex("0000107cd6d6d6d6d67c101000000000"),  # 0xe8
    bytes.fromhex("00007cc6c6c6fec6c6c6c67c00000000"),  # 0xe9
    bytes.fromhex("00007cc6c6c6c6c66c6c6cee00000000"),  # 0xea
    bytes.fromhex("00003c6630187cc6c6c6c67c00000000"),  # 0xeb
    bytes.fromhex("000000000076dbdb6e00000000000000"),  # 0xec
    bytes.fromhex("00000000006cd6d6d6d6d67c10101000"),  # 0xed
    bytes.fromhex("00000000007cc6c078c0c67c00000000"),  # 0xee
    bytes.fromhex("000000007cc6c6c6c6c6c6c600000000"),  # 0xef
    bytes.fromhex("00000000fe0000fe0000fe0000000000"),  # 0xf0
    bytes.fromhex("0000000018187e1818007e0000000000"),  # 0xf1
    bytes.fromhex("00000000e0380e38e000fe0000000000"),  # 0xf2
    bytes.fromhex("000000000e38e0380e00fe0000000000"),  # 0xf3
    bytes.fromhex("00000e1b1b1818181818181818181818"),  # 0xf4
    bytes.fromhex("1818181818181818d8d8d87000000000"),  # 0xf5
    bytes.fromhex("000000001818007e0018180000000000"),  # 0xf6
    bytes.fromhex("000000000076dc0076dc000000000000"),  # 0xf7
    bytes.fromhex("00386c6c380000000000000000000000"),  # 0xf8
    bytes.fromhex("0000000000183c3c1800000000000000"),  # 0xf9
    bytes.fromhex("00000000000000001800000000000000"),  # 0xfa
    bytes.fromhex("000003030606060ccc6c381800000000"),  # 0xfb
    bytes.fromhex("0000b0d8d8d8d8000000000000000000"),  # 0xfc
    bytes.fromhex("0070d83060c8f8000000000000000000"),  # 0xfd
    bytes.fromhex("000000fefefefefefefefefe00000000"),  # 0xfe
    bytes.fromhex("00000000000000000000000000000000"),  # 0xff
)
