"""Where a distilled student's error comes from, in one run: the student's image error against its teacher, split
into what its G_S costs (the teacher's own G_T fed the student's z_S) and what its G_T costs (the student's G_T fed
the teacher's z_S), beside both G_T's gain with respect to z_S (% image change per 1% change of z_S).

    .venv/bin/python -m bench.bench_distill [--teacher PATH] [--student PATH] [--windows 24]

Numbers are pyramid L1 (pixels in [-1, 1], summed over 3 scales), as `infinitygan distill` logs its `pixel` loss.
A teacher whose gain is g turns a student G_S that is e off in z_S into an image error of about g * e before the
student's G_T adds its own, which is why a high-gain teacher cannot be distilled into a cheaper G_S.
"""

from __future__ import annotations

import argparse
import json

import torch

from infinitygan.checkpoint import SHIPPED_MODEL, TEACHER_MODEL, load_generator
from infinitygan.distill import DistillConfig, Distiller, build_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(TEACHER_MODEL), help="teacher checkpoint (default: the shipped's)")
    parser.add_argument("--student", default=str(SHIPPED_MODEL), help="student checkpoint (default: the shipped)")
    parser.add_argument("--windows", type=int, default=24, help="12-cell windows around the horizon")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load_generator(args.teacher)
    student = load_generator(args.student)
    if student.metadata.get("distilled_from") not in (None, teacher.model_hash):
        print(f"note: the student was distilled from {student.metadata['distilled_from']}, not {teacher.model_hash}")
    run = Distiller(teacher, DistillConfig(), build_student(teacher.generator, student.generator.config))
    run.student.load_state_dict(student.generator.state_dict())
    result = run.error_breakdown(windows=args.windows)
    print(f"teacher {teacher.model_hash}  student {student.model_hash}  ({args.windows} windows, psi 0.8)")
    print(f"  G_T gain w.r.t. z_S: teacher {result['teacher_gain']:.1f}, student {result['student_gain']:.1f}")
    print(f"  student z_S L1 / teacher mean |z_S|: {result['z_s_relative_l1']:.3f}")
    print(f"  image error (pyramid L1): student {result['student']:.3f}")
    print(f"    teacher G_T on the student's z_S (G_S's share): {result['teacher_g_t_on_student_z_s']:.3f}")
    print(f"    student G_T on the teacher's z_S (G_T's share): {result['student_g_t_on_teacher_z_s']:.3f}")
    print(f"    the teacher fed other noise (unreachable without its noise): {result['teacher_other_noise']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
